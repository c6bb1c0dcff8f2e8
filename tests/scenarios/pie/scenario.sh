# function-replaced, with the target built as a position-independent executable
# explicitly (whatever the compiler's default).
project ../function-replaced/project CFLAGS='-O2 -fPIE' LDFLAGS=-pie
readelf -h "$PROJECT/target" | grep 'Type: *DYN' >/dev/null || fail "the target is not PIE"
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix ../function-replaced/fix.diff
expect_replaced compute
apply fix
wait_for 'value=1[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
