# function-replaced, with a non-PIE target (fixed addresses) and a patch built
# as non-PIC code.
build target ../function-replaced/target.c -fno-pie -no-pie
readelf -h "$W/target" | grep 'Type: *EXEC' >/dev/null || fail "the target is not a fixed-address executable"
fix fix fix.c -fno-pic
readelf -r "$W/fix.o" | grep -E 'R_X86_64_32S? ' >/dev/null || fail "the patch has no absolute relocations"
pack fix target

start target
wait_for 'value=[0-9]{1,2}$'
apply fix
wait_for 'tick ([0-9]*([0-9])) value=1\2[0-9]{2}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
