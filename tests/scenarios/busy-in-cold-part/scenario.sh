# A thread waits forever in the part of handle() that gcc split off
# (handle.cold): it is inside handle() although no frame's pc is in handle's
# own bytes. The apply must wait for it and, at the timeout, refuse, naming
# handle; the target is left untouched.
project project
nm "$PROJECT/target" | grep -qE ' t handle\.cold' || fail "gcc did not split handle.cold off (the test would prove nothing)"
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced handle
apply_fails 'handle' --timeout 1 fix
expect_no 'value=1[0-9]{3}$'
status_lacks fix
