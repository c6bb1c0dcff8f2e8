# The fix also makes main's code differ: gcc's interprocedural register
# allocation (-fipa-ra) saw the new score() clobber more registers (main keeps
# a value in %esi across the call in the original, moves it after the call in
# the rebuild). main never returns, so replacing it would make the apply wait
# forever; suture build proves with a side compile (-fno-ipa-ra) that this is
# main's only difference, keeps the running main and reaches score through a
# register-preserving thunk. The old main must then keep printing the right
# tick next to the new score.
# The fix brings a function the program never had (digit_sum) besides the
# changed one: the patch built from it carries the helper as a function of its
# own.
project project
start project/target
wait_for 'score=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced score
grep -qE '^not a change: target\.c: main: kept; differs only by interprocedural register allocation around calls to score; score is reached through a register-preserving thunk \(.*rsi' "$LAST_BUILD_OUT" ||
  fail "suture build does not say it keeps main and reaches score through a thunk that preserves rsi"
grep -q 'note: score leaves .*rsi' "$LAST_BUILD_OUT" || fail "pack does not preserve rsi for the kept main"
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
# The old main printed every tick, one after the other, through the patch.
stop
