# suture build on a plain Makefile without dependency tracking: the fix is in a
# header (a macro and a static inline function), which `make` does not follow,
# so the patched build recompiles nothing. The wrapper recorded which headers
# each compile read (a side -MD file, the objects unchanged), and suture build
# replays the compile of both translation units that include it; describe()
# and calc_next() are replaced. A touched header that no compile read is
# reported outside the build.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"
[[ -z $(find "$W/proj" -name '*.d') ]] || fail "the project writes dependency files (the scenario needs it not to)"

start proj/server
wait_for 'v1 value=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replayed: main.c' 'replayed: calc.c' 'replaces describe' 'replaces calc_next' 'outside the build: unused.h'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
grep -qF 'recompiled:' "$LAST_OUT" && fail "the project's build is said to have recompiled something"
grep -qE 'replaces main$' "$LAST_OUT" && fail "suture build replaces main, which did not change"

apply out
wait_for 'v2-fixed value=[0-9]+$'
wait_lines 3 'v2-fixed'
new_lines | awk '/v2-fixed/ { split($0, f, /[ =]/); if (f[5] != f[2] + 1000) { print "tick " f[2] ": value " f[5]; bad = 1 } n++ }
                 END { exit bad || n < 3 }' || fail "calc_next() lacks the fix from the header"
expect_no ' v1 '
revert
wait_for 'v1 value=[0-9]+$'
