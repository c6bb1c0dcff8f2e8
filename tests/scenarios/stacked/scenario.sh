# Two patches for one function, the second built from the first fix and one on
# top of it (cumulative, as fixes come): the newest runs; the older cannot be
# taken away from under the newer (whose recorded original bytes are the
# older's jump); reverting the newest brings the older back, then the original.
project project
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff first first.diff
build_from_diff second first.diff second.diff
expect_replaced compute
apply first
wait_for 'value=2[0-9]{3}$'
apply second
wait_for 'value=3[0-9]{3}$'
expect_no 'value=([0-9]{1,2}|2[0-9]{3})$'
status_has first second

revert_fails 'depend|newer|on top|stacked|second|'"${PATCH_ID[second]}" first
expect_no 'value=([0-9]{1,2}|2[0-9]{3})$'
status_has first second

revert second
wait_for 'value=2[0-9]{3}$'
expect_no 'value=([0-9]{1,2}|3[0-9]{3})$'
status_has first
status_lacks second

revert first
wait_for 'value=[0-9]{1,2}$'
expect_no 'value=[23][0-9]{3}$'
status_empty
