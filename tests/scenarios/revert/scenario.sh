# Apply, revert (all), apply again, revert by id: the old behaviour comes back
# each time and status ends empty. The first apply asks for --json.
project project
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced compute
apply --json fix
grep -qF "${PATCH_ID[fix]}" "$LAST_OUT" || fail "apply --json does not name the patch"
wait_for 'value=7[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix

revert
wait_for 'value=[0-9]{1,2}$'
expect_no 'value=7[0-9]{3}$'
status_empty

apply fix
wait_for 'value=7[0-9]{3}$'
expect_no 'value=[0-9]{1,2}$'
status_has fix
revert fix
wait_for 'value=[0-9]{1,2}$'
expect_no 'value=7[0-9]{3}$'
status_empty
