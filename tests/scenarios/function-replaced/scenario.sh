# One function of a running program replaced, the patch built from the fix's
# diff; the program's own output shows it.
project project
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced compute
apply fix
wait_for 'value=1[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
