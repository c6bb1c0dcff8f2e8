# suture itself SIGKILLed while it waits for a busy function (after the patch's
# code was mapped, before any function was redirected): no handler can run, so
# the in-target record must tell the story. status shows the patch as
# "prepared", a new apply of it is refused with a pointer to revert, revert
# removes it, and the target ends exactly as it was before.
project ../busy-never-returns/project
start project/target
wait_for 'value=[0-9]{1,2}$'
build_from_diff fix ../busy-never-returns/fix.diff
before=$W/snapshot-before-kill
snapshot "$before"
suture_background apply --timeout 30 "$TARGET_PID" "$W/fix"
sleep 1
[[ $(ps -o stat= -p "$SUTURE_BG" || true) == [^Z]* ]] || fail "suture apply ended before SIGKILL"
suture_signal KILL
suture_background_wait 10
expect_running

status_has fix
status_call
grep -qE "${PATCH_ID[fix]}.*prepared" "$LAST_OUT" || fail "status does not show the patch as prepared"
# Given the patch file or its directory, the refusal gives the reason.
apply_fails 'did not finish.*revert' fix/target
apply_fails 'did not finish.*revert' fix
expect_no 'value=1[0-9]{3}$'

revert fix
status_empty
expect_unchanged "$before"
expect_no 'value=1[0-9]{3}$'
