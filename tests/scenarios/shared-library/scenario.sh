# A function of a shared library the target links: the patch built from the
# fix is for the .so and goes to that object of the process.
project project
start project/target
wait_for 'lib=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced lib_compute
[[ -f $W/fix/libgreet.so.sut && ! -e $W/fix/target.sut ]] || fail "expected one patch, for libgreet.so: $(ls "$W/fix")"
apply fix
grep -q 'libgreet' "$LAST_OUT" || fail "apply does not say it patched libgreet.so"
wait_for 'lib=4[0-9]{3}$'
expect_no 'lib=[0-9]{1,2}$'
status_has fix
