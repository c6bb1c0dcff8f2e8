# A thread that never leaves the function to replace: apply waits --timeout 1,
# then refuses, naming the thread, the function and its backtrace, and the
# target is left exactly as it was.
project project
start project/target
wait_for '^spinner tid=[0-9]+$'
tid=$(grep -m 1 -oE '^spinner tid=[0-9]+' "$LOG" | cut -d= -f2)
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced compute spin_forever
apply_fails "(spinner|$tid).*spin_forever|spin_forever.*(spinner|$tid)" --timeout 1 fix
expect_quick 8
grep -q 'spinner_main' "$LAST_ERR" || fail "the refusal does not show the thread's backtrace (spinner_main)"
expect_no 'value=1[0-9]{3}$'
status_lacks fix
