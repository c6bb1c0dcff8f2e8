# suture build when the project's own build leaves a touched source stale: like
# Redis with deps/lua, this project builds its vendored library into a static
# archive once and `make` never looks at it again, so the fix in
# deps/vend/vend.c is not recompiled by the build. suture build replays the
# compile its wrapper logged for that file in the original build, compares the
# object, finds the binary through the archive the link used, and the patch
# takes effect with the library's static state kept. A touched source that no
# compile of the build ever used is refused, naming it.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'value=[0-9]+ rounds=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replayed: deps/vend/vend.c' 'replaces vend_value' 'server.sut for'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
grep -qF 'recompiled: deps/vend/vend.c' "$LAST_OUT" && fail "the project's build is said to have recompiled vend.c"
grep -qE 'replaces (vend_other|vend_rounds|main)' "$LAST_OUT" && fail "suture build replaces an unchanged function"

apply out
wait_for 'value=5[0-9][0-9][0-9] rounds=[0-9]+$'
wait_lines 5 'value='
# The patched vend_value() counts in the library's own `rounds`.
new_lines | awk '/value=/ { split($0, f, /[ =]/); v = f[4]; r = f[6]
                   if (v < 5000) { print "value " v " lacks the fix"; bad = 1 }
                   if (prev && r != prev + 1) { print "rounds went from " prev " to " r; bad = 1 }
                   prev = r; n++ }
                 END { exit bad || n < 5 }' || fail "the patched library does not count on, or lacks the fix"

suture_call build --source "$W/proj" --output "$W/out2" --cache "$W/cache" "$SCENARIO_DIR/unused.diff"
expect_refusal build 'deps/vend/unused\.c is changed by the diff but no compile of the build uses it'
