# suture build: a small make project is built the ordinary way and runs; the fix
# arrives as a diff (one source file plus a README). suture build rebuilds the
# original and the patched tree through its compiler wrapper, finds the two
# changed functions, keeps the static `calls` of the running program (its count
# goes on), reports the README as outside the build, and writes a patch that
# apply takes as a directory. A second build reuses the cached original build.
# A running binary built with other flags than the tree's build is refused by
# the fidelity check, naming the function.
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CC="${CC:-cc}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'v1 value=[0-9]+ calls=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replaces compute' 'replaces label' 'outside the build: README' 'recompiled: util.c' 'original build: built'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
grep -qE 'replaces (call_count|scale|main)' "$LAST_OUT" && fail "suture build replaces an unchanged function"

apply out
wait_for 'v2-fixed value=[0-9]+ calls=[0-9]+$'
expect_no ' v1 '
# The patched compute() counts in the program's own `calls`: call_count(), not
# patched, sees it go on by one a tick; values carry the fix (+1000 a step).
new_lines | awk '/v2-fixed/ { split($0, f, /[ =]/); tick = f[2]; value = f[5]; calls = f[7]
                   if (prev && calls != prev + 1) { print "calls went from " prev " to " calls; bad = 1 }
                   if (tick % 7 != 0 && value < 1000) { print "tick " tick ": value " value " lacks the fix"; bad = 1 }
                   prev = calls; n++ }
                 END { exit bad || n < 5 }' || fail "the patched program does not count on, or lacks the fix"

suture_call build --source "$W/proj" --output "$W/out2" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
grep -qF 'original build: reused from the cache' "$LAST_OUT" || fail "the second build did not reuse the original build"

cp -r "$SCENARIO_DIR/project" "$W/proj-o1"
make -s -C "$W/proj-o1" CC="${CC:-cc}" CFLAGS=-O1 >/dev/null || fail "the -O1 project does not build"
suture_call build --source "$W/proj-o1" --output "$W/out3" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_refusal build 'compute.*not the code that runs'
