# Zero-suspend apply with --safe-point handle_request while three workers serve
# requests that each call both patched functions: every thread switches when it
# next enters handle_request (the idle one is found idle), and no request ever
# gets one step from each version; revert the same way, three rounds; then
# apply again with --json.
build target target.c
fix fix fix.c
pack fix target

start target
wait_for 'worker 2 round [0-9]+ v1=[1-9][0-9]* v10=0 mixed=0'
for round in 1 2 3; do
  apply --mode zero-suspend --safe-point handle_request fix
  grep -qE 'safe point handle_request: [0-9]+ threads switched' "$LAST_OUT" ||
    fail "apply does not report the transition: $(cat "$LAST_OUT")"
  wait_for 'worker 2 round [0-9]+ v1=0 v10=[1-9][0-9]* mixed=0'
  revert --mode zero-suspend --safe-point handle_request
  wait_for 'worker 2 round [0-9]+ v1=[1-9][0-9]* v10=0 mixed=0'
done
apply --json --mode zero-suspend --safe-point handle_request fix
"${PROBE[0]}" -c '
import json, sys
j = json.load(open(sys.argv[1]))
t = j["transition"]
assert t["safe_point"] == "handle_request", t
threads = {x["thread"]: x["how"] for x in t["threads"]}
assert threads.get("idler") == "idle between requests", threads
assert any(h == "entered the safe point" for n, h in threads.items() if n.startswith("worker")), threads
assert set(t["old_calls"]) == {"step_a", "step_b"}, t["old_calls"]
' "$LAST_OUT" || fail "the --json transition report is wrong: $(cat "$LAST_OUT")"
wait_for 'worker 0 round [0-9]+ v1=0 v10=[1-9][0-9]* mixed=0'
expect_no 'mixed=[1-9]'
stop
