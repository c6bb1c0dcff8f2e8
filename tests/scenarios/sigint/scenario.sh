# SIGINT (then SIGTERM) to suture while it waits for a busy function: it must
# exit non-zero promptly, leaving the target exactly as it was, running, and
# without a signal of its own (the target reports any stray signal it gets).
project ../busy-never-returns/project
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix ../busy-never-returns/fix.diff
for sig in INT TERM; do
  before=$W/snapshot-before-$sig
  snapshot "$before"
  suture_background apply --timeout 30 "$TARGET_PID" "$W/fix"
  sleep 1
  [[ $(ps -o stat= -p "$SUTURE_BG" || true) == [^Z]* ]] || fail "suture apply ended before SIG$sig"
  suture_signal "$sig"
  suture_background_wait 10
  [[ $LAST_RC -ne 0 ]] || fail "suture exited 0 after SIG$sig"
  expect_quick 3
  expect_unchanged "$before"
done
expect_no 'value=1[0-9]{3}$'
status_lacks fix
