# suture build on a fix that adds a source file (and the Makefile line that
# compiles and links it): its functions and variables are new, so they come in
# the patch whole, found in the binary the patched build linked the new object
# into; the changed caller in util.c calls them. The Makefile is reported as a
# build description, not as outside the build.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'value=[0-9]$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'recompiled: bonus.c' 'recompiled: util.c' 'replaces compute' 'build description: Makefile'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
for new in bonus bonus_count bonus_base bonus_calls; do
  grep -qE "includes .*\\b$new\\b" "$LAST_OUT" || fail "suture build does not include the new $new"
done
grep -qE 'replaces (bonus|main)' "$LAST_OUT" && fail "suture build replaces a function that is new or unchanged"

apply out
# compute() now calls the new bonus(), whose own counter is then above 0.
wait_for 'value=71[0-9][0-9]$'
wait_lines 3 'value='
new_lines | awk '/value=/ { split($0, f, /[ =]/); if (f[4] != 7100 + f[2] % 10) { print "tick " f[2] ": value " f[4]; bad = 1 } n++ }
                 END { exit bad || n < 3 }' || fail "the new function's state is not its own"
revert
wait_for 'value=[0-9]$'
