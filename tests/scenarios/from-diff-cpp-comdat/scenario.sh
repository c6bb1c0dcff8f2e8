# suture build on a C++ make project: the fix changes a template member defined
# in a header (Meter<int>::add, instantiated by a.cc and by b.cc, each copy in a
# COMDAT group; the linker kept one) and app::label() in a.cc. Both units are
# recompiled and both copies are found changed; the function is replaced once,
# by its mangled name, and both meters count on from their running totals with
# the fix (ten times the step).
cp -r "$SCENARIO_DIR/project" "$W/proj"
make -s -C "$W/proj" CXX="${CXX:-c++}" >/dev/null || fail "the project does not build"

start proj/server
wait_for 'tick [0-9]+ v1 a=[0-9]+ b=[0-9]+$'

suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replaces _ZN3app5labelEv' 'replaces _ZN5MeterIiE3addEi' 'recompiled: a.cc' 'recompiled: b.cc'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
[[ $(grep -c 'replaces _ZN5MeterIiE3addEi' "$LAST_OUT") == 1 ]] || fail "Meter<int>::add is replaced more than once"
grep -qE 'replaces _ZN3app6step_' "$LAST_OUT" && fail "suture build replaces an unchanged caller"

apply out
wait_for 'tick [0-9]+ v2-fixed a=[0-9]+ b=[0-9]+$'
expect_no ' v1 '
# Each meter goes on from its running total (a fresh copy would start at 0: the
# build alone takes more ticks than 10), then by 10 a tick (b adds 2 a tick, 20
# with the fix).
new_lines | awk '/v2-fixed/ { split($4, a, "="); split($5, b, "=")
                   if (!n && (a[2] < $2 || b[2] < $2)) { print "tick " $2 ": " $4 " " $5 ": the totals restarted"; bad = 1 }
                   if (n && (a[2] != pa + 10 || b[2] != pb + 20)) { print "tick " $2 ": " $4 " " $5 " after " pa " " pb; bad = 1 }
                   pa = a[2]; pb = b[2]; n++ }
                 END { exit bad || n < 5 }' || fail "the meters do not count on by ten times the step from their running totals"
stop
