# suture build from a diff that changes tick_count and adds, after it, a
# function with a function-local `static int counter` of its own: gcc then names
# tick_count's counter `counter.1` instead of `counter.0`. The patched
# tick_count must count on in the running program's counter.0 (now by 2 a
# tick), and the new function's counter is the patch's own.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'tick [0-9]+ v1 count=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replaces tick_count' 'replaces label' 'new data counter.0'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done

apply out
wait_for 'tick [0-9]+ v2-fixed count=[0-9]+$'
expect_no ' v1 '
# count was tick + 1 before the patch: it goes on from there, by 2 a tick.
new_lines | awk '/v2-fixed/ { split($4, c, "=")
                   if (!n && c[2] < $2) { print "tick " $2 ": count " c[2] " restarted"; bad = 1 }
                   if (n && c[2] != prev + 2) { print "tick " $2 ": count " c[2] " after " prev; bad = 1 }
                   prev = c[2]; n++ }
                 END { exit bad || n < 5 }' || fail "tick_count does not count on in the running counter"
stop
