# A function of a shared library the target links: the patch is packed against
# the .so and goes to that object of the process.
build_lib libgreet.so greet.c
build target main.c -L"$W" -lgreet -Wl,-rpath,"$W"
fix fix fix.c
pack fix libgreet.so

start target
wait_for 'lib=[0-9]{1,2}$'
apply fix
grep -q 'libgreet' "$LAST_OUT" || fail "apply does not say it patched libgreet.so"
wait_for 'lib=4[0-9]{3}$'
expect_no 'lib=[0-9]{1,2}$'
status_has fix
