# suture build from a diff that adds a comment line above functions with
# assertions and a logging macro (so every __LINE__ below moves by one) and
# changes one function for real. Only that function is patched: the summary
# lists the others as not a change, with the lines that moved and where they
# go (argument 3 of __assert_fail, argument 2 of log_at), and the running
# program keeps their code.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'tick [0-9]+ v1 value=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
grep -qF 'replaces label' "$LAST_OUT" || fail "suture build does not replace label"
grep -qE 'replaces (checked_double|logged_step|log_at|main)' "$LAST_OUT" &&
  fail "suture build replaces a function whose lines only moved"
grep -qE '^not a change: checks.c: checked_double: only line numbers changed: .*line 7 -> 8 \(argument 3 of __assert_fail\).*line 8 -> 9 \(argument 3 of __assert_fail\)' "$LAST_OUT" ||
  fail "the summary does not say why checked_double is not a change"
grep -qE '^not a change: checks.c: logged_step: only line numbers changed: .*line 13 -> 14 \(argument 2 of log_at\)' "$LAST_OUT" ||
  fail "the summary does not say why logged_step is not a change"

apply out
wait_for 'tick [0-9]+ v2-fixed value=[0-9]+$'
expect_no ' v1 '
# The unpatched functions still compute what they did: value = 2 * (tick + 1).
new_lines | awk '/v2-fixed/ { if ($4 != "value=" 2 * ($2 + 1)) { print "tick " $2 ": " $4; bad = 1 }; n++ }
                 END { exit bad || n < 5 }' || fail "the program computes other values after the patch"
stop
