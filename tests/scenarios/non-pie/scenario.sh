# function-replaced, with a non-PIE target (fixed addresses, code built with
# -fno-pie). The fix adds a table and a pointer to the program's `base`: the
# patch built from it has absolute 32-bit relocations (R_X86_64_32S /
# R_X86_64_32), which only fit when the patch is placed low, as the non-PIE
# executable is. V moves to 1000 + 100 * (tick % 10) + old value.
project ../function-replaced/project CFLAGS='-O2 -fno-pie' LDFLAGS=-no-pie
readelf -h "$PROJECT/target" | grep 'Type: *EXEC' >/dev/null || fail "the target is not a fixed-address executable"
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced compute
patch_object fix fix.o
readelf -r "$W/fix.o" | grep -E 'R_X86_64_32S? ' >/dev/null || fail "the patch has no absolute relocations"
apply fix
wait_for 'tick ([0-9]*([0-9])) value=1\2[0-9]{2}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
