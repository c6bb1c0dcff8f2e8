# One function of a running program replaced; the program's own output shows it.
build target target.c
fix fix fix.c
pack fix target

start target
wait_for 'value=[0-9]{1,2}$'
apply fix
wait_for 'value=1[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
