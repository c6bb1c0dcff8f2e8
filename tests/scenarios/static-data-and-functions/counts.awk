# Reads the whole target log of static-data-and-functions: A must go on from
# a.c's count: the first patched value is the last unpatched one plus 10,
# negated, then -10 per tick (a.c's scaled of a.c's count). B keeps b.c's
# pattern: +2000 per tick, ending in 002. Fails (exit 1) on any other line of
# values, or with fewer than 5 patched lines.
/^tick [0-9]+ a=-?[0-9]+ b=[0-9]+$/ {
  split($0, f, /[ =]/); a = f[4] + 0; b = f[6] + 0
  if (seen) {
    if (a < 0) {
      want = (prev_a < 0) ? prev_a - 10 : -(prev_a + 10)
      if (a != want) { print "a=" a " after a=" prev_a ", expected " want; bad = 1 }
      patched++
    } else if (a != prev_a + 10) { print "unpatched a=" a " after " prev_a; bad = 1 }
    if (b != prev_b + 2000) { print "b=" b " after b=" prev_b; bad = 1 }
  }
  if (b % 1000 != 2) { print "b=" b " is not from b.c"; bad = 1 }
  prev_a = a; prev_b = b; seen = 1
}
END { exit bad || patched < 5 }
