# Zero-suspend apply and revert, four times each, while four threads call the
# function being switched millions of times a second: no wrong answer, no
# stray signal, no crash; between switches only the current version answers.
build target target.c
fix fix fix.c
pack fix target

start target
wait_for 'hammer 3 round [0-9]+ old=[1-9][0-9]* new=0 bad=0'
for round in 1 2 3 4; do
  apply --mode zero-suspend fix
  grep -qE 'longest hold' "$LAST_OUT" || fail "zero-suspend apply does not report the longest hold"
  wait_for 'hammer 2 round [0-9]+ old=0 new=[1-9][0-9]* bad=0'
  revert --mode zero-suspend
  wait_for 'hammer 2 round [0-9]+ old=[1-9][0-9]* new=0 bad=0'
done
apply --json --mode zero-suspend fix
"${PROBE[0]}" -c '
import json, sys
j = json.load(open(sys.argv[1]))
z = j["zero_suspend"]
assert j["mode"] == "zero-suspend", j["mode"]
assert z["threads"] >= 5, z
assert z["syncs"] == 3, z
' "$LAST_OUT" || fail "zero-suspend --json report is wrong: $(cat "$LAST_OUT")"
wait_for 'hammer 1 round [0-9]+ old=0 new=[1-9][0-9]* bad=0'
expect_no 'bad=[1-9]'
stop
