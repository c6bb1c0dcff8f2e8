# A C++ method and one of two namespaced overloads changed by the fix: the
# patch built from it replaces shop::Counter::next(int) (the object's state
# goes on) and shop::price(int), not shop::price(int, int).
project project
nm -C "$PROJECT/target" | grep 'shop::Counter::next(int)' >/dev/null || fail "shop::Counter::next was inlined"
start project/target
wait_for 'price=[0-9]{1,2} '
build_from_diff fix fix.diff
expect_replaced 'shop::Counter::next(int)' 'shop::price(int)'
apply fix
wait_for 'price=5[0-9]{2} '
expect_no 'price=[0-9]{1,2} '
"${PROBE[@]}" lines "$LOG" 0 | "${PROBE[0]}" "$SCENARIO_DIR/totals.py" || fail "the method or the overloads misbehaved"
status_has fix
