# suture build on a make project whose diff changes both a shared library it
# builds and the executable: two patches, one per binary, each keyed by its own
# build-id, applied together from the output directory.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'hello/(calm|quiet)$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
grep -qF 'replaces greeting' "$LAST_OUT" || fail "suture build does not replace greeting"
grep -qF 'replaces mood' "$LAST_OUT" || fail "suture build does not replace mood"
[[ -f $W/out/libgreet.so.sut && -f $W/out/server.sut ]] || fail "expected one patch per binary: $(ls "$W/out")"

apply out
wait_for 'HELLO/(CALM|QUIET)$'
expect_no 'hello|calm|quiet'
revert
wait_for 'hello/(calm|quiet)$'
status_empty
