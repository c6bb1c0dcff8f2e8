# ifunc-not-imported with a hand-written patch. The patch calls strchrnul,
# which the target does not import and glibc provides as an IFUNC: suture must
# resolve it as the dynamic linker would (run the resolver in the target), not
# hand out the resolver's address.
build target ../ifunc-not-imported/project/target.c
fix fix fix.c
nm -D --undefined-only "$W/target" | grep -w strchrnul >/dev/null && fail "the target imports strchrnul already"
nm --undefined-only "$W/fix.o" | grep -w strchrnul >/dev/null || fail "the compiler replaced the call to strchrnul"
libc=$(ldd "$W/target" | awk '/libc\.so/ { print $3 }')
nm -D "$libc" | grep -E ' i strchrnul(@@.*)?$' >/dev/null || fail "strchrnul is not an IFUNC in $libc"
pack fix target

start target
wait_for 'first=[0-9]$'
apply fix
wait_for 'first=1[0-9]{2}$'
expect_no 'first=[0-9]{1,2}$'
# L must be right: "id" + the tick's digits, plus 100.
new_lines | awk '
  /first=/ { split($0, f, /[ =]/); want = 100 + 2 + length(f[2])
             if (f[4] != want) { print "tick " f[2] ": first=" f[4] ", expected " want; bad = 1 }; n++ }
  END { exit bad || n == 0 }' || fail "the patched function computed wrong lengths"
status_has fix
