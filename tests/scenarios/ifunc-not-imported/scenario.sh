# The fix also makes main's code differ: gcc's interprocedural register
# allocation (-fipa-ra) saw the new first_field_length() clobber more registers
# (main keeps a value in %esi across the call in the original, moves it after
# the call in the rebuild). main never returns; suture build proves with a side
# compile (-fno-ipa-ra) that this is main's only difference, keeps the running
# main and reaches first_field_length through a register-preserving thunk.
# The fix calls strchrnul, which the target does not import and glibc
# provides as an IFUNC: suture must resolve it as the dynamic linker would
# (run the resolver in the target), not hand out the resolver's address.
project project
nm -D --undefined-only "$PROJECT/target" | grep -w strchrnul >/dev/null && fail "the target imports strchrnul already"
libc=$(ldd "$PROJECT/target" | awk '/libc\.so/ { print $3 }')
nm -D "$libc" | grep -E ' i strchrnul(@@.*)?$' >/dev/null || fail "strchrnul is not an IFUNC in $libc"
start project/target
wait_for 'first=[0-9]$'
build_from_diff fix fix.diff
expect_replaced first_field_length
grep -qE '^not a change: target\.c: main: kept; differs only by interprocedural register allocation around calls to first_field_length; first_field_length is reached through a register-preserving thunk' "$LAST_BUILD_OUT" ||
  fail "suture build does not say it keeps main and reaches first_field_length through a thunk"
patch_object fix fix.o
nm --undefined-only "$W/fix.o" | grep -w strchrnul >/dev/null || fail "the compiler replaced the call to strchrnul"
apply fix
wait_for 'first=1[0-9]{2}$'
expect_no 'first=[0-9]{1,2}$'
# L must be right: "id" + the tick's digits, plus 100.
new_lines | awk '
  /first=/ { split($0, f, /[ =]/); want = 100 + 2 + length(f[2])
             if (f[4] != want) { print "tick " f[2] ": first=" f[4] ", expected " want; bad = 1 }; n++ }
  END { exit bad || n == 0 }' || fail "the patched function computed wrong lengths"
status_has fix
# The old main printed every tick, one after the other, through the patch.
stop
