# Threads are created and end all the time while suture attaches, checks,
# patches and detaches: it must catch the new ones and forget the dead ones.
# Three rounds of apply and revert.
project project
start project/target
wait_for 'value=[0-9]{1,2} churn=[0-9]{1,2} spawned=[1-9]'
build_from_diff fix fix.diff
expect_replaced compute
spawned() { "${PROBE[@]}" lines "$LOG" 0 | sed -n 's/.*spawned=//p' | tail -n 1; }
for round in 1 2 3; do
  say "round $round"
  apply fix
  wait_for 'value=9[0-9]{3} churn=9[0-9]{3} '
  expect_no 'value=[0-9]{1,2} |churn=[0-9]{1,2} '
  before=$(spawned)
  revert
  wait_for 'value=[0-9]{1,2} churn=[0-9]{1,2} '
  expect_no 'value=9[0-9]{3}|churn=9[0-9]{3}'
  [[ $(spawned) -gt $((before + 100)) ]] || fail "threads stopped being created ($before, then $(spawned))"
done
status_empty
