# The function to replace is on the worker's stack 97% of the time; the apply
# must wait for it to return (within --timeout) and then succeed. Reverting
# meets the worker inside the new code the same way.
project project
start project/target
wait_for '^worker round 0 result=0$' 5
build_from_diff fix fix.diff
expect_replaced slow_work
apply --timeout 10 fix
wait_for '^worker round [0-9]+ result=1[0-9]{5}$' 10
# From then on every round is the new code's (the patched function is only
# ever entered after the redirect).
wait_for '^worker round [0-9]+ result=' 5
expect_no '^worker round [0-9]+ result=[0-9]{1,4}$' 2.5
status_has fix

revert --timeout 10 fix
wait_for '^worker round ([0-9]+) result=[0-9]{1,4}$' 10
status_empty
