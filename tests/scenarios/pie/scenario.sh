# function-replaced, with the target built as a position-independent executable
# explicitly (whatever the compiler's default).
build target ../function-replaced/target.c -fPIE -pie
readelf -h "$W/target" | grep 'Type: *DYN' >/dev/null || fail "the target is not PIE"
fix fix ../function-replaced/fix.c
pack fix target

start target
wait_for 'value=[0-9]{1,2}$'
apply fix
wait_for 'value=1[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
