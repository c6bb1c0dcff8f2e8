# NOT REGISTERED YET (pack-new-helper-function covers the behaviour with a hand-written
# patch): suture build also replaces main, whose code differs only because gcc's
# interprocedural register allocation (-fipa-ra) saw the new score() clobber
# more registers (main keeps a value in %esi across the call in the original,
# moves it after the call in the rebuild). main never returns, so the apply is
# refused (the thread is inside main). The caller needs no replacing: pack's
# register-preserving thunk is what covers it.
# The fix brings a function the program never had (digit_sum) besides the
# changed one: the patch built from it carries the helper as a function of its
# own.
project project
start project/target
wait_for 'score=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced score
grep -qE 'includes .*digit_sum' "$LAST_BUILD_OUT" || fail "suture build does not say it includes the new digit_sum"
patch_object fix fix.o
nm "$W/fix.o" | grep -E ' t digit_sum$' >/dev/null || fail "the helper was not kept as a function of its own"
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
