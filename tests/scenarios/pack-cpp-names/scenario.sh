# cpp-methods with a hand-written patch: a C++ method replaced through a free
# function with an explicit `this`, and a namespaced overload, named in
# SUTURE_REPLACE the way C++ programmers write them.
build target ../cpp-methods/project/target.cc
nm -C "$W/target" | grep 'shop::Counter::next(int)' >/dev/null || fail "shop::Counter::next was inlined"
fix fix fix.cc
pack fix target

start target
wait_for 'price=[0-9]{1,2} '
apply fix
wait_for 'price=5[0-9]{2} '
expect_no 'price=[0-9]{1,2} '
"${PROBE[@]}" lines "$LOG" 0 | "${PROBE[0]}" "$SCENARIOS/cpp-methods/totals.py" ||
  fail "the method or the overloads misbehaved"
status_has fix
