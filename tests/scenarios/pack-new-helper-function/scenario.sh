# new-helper-function with a hand-written patch: it brings a function of its
# own (digit_sum) besides the replacement.
build target ../new-helper-function/project/target.c
fix fix fix.c
nm "$W/fix.o" | grep ' t digit_sum$' >/dev/null || fail "the helper was not kept as a function of its own"
pack fix target

start target
wait_for 'score=[0-9]{1,2}$'
apply fix
wait_for 'score=5[0-9]{2}$'
expect_no 'score=[0-9]{1,2}$'
# Every patched line must carry the helper's exact answer.
new_lines | awk '
  match($0, /^tick ([0-9]+) score=([0-9]+)$/) {
    split($0, f, /[ =]/); tick = f[2]; got = f[4]
    want = 500; for (n = tick; n > 0; n = int(n / 10)) want += n % 10
    if (got != want) { print "tick " tick ": score " got ", expected " want; bad = 1 }
    n_lines++
  }
  END { exit bad || n_lines == 0 }' || fail "the helper computed wrong scores"
status_has fix
