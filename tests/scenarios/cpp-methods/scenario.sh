# A C++ method (through an explicit `this`) and a namespaced overloaded function
# replaced, named the way C++ programmers write them.
build target target.cc
nm -C "$W/target" | grep 'shop::Counter::next(int)' >/dev/null || fail "shop::Counter::next was inlined"
fix fix fix.cc
pack fix target

start target
wait_for 'price=[0-9]{1,2} '
apply fix
wait_for 'price=5[0-9]{2} '
expect_no 'price=[0-9]{1,2} '
# total goes on from the object's own state, +1002 a tick (step 2); the
# two-argument overload is untouched (3 * (tick % 10) - 1).
"${PROBE[@]}" lines "$LOG" 0 | "${PROBE[0]}" -c '
import re, sys
prev = None
patched = 0
for line in sys.stdin:
    m = re.match(r"tick (\d+) total=(-?\d+) price=(\d+) price2=(-?\d+)$", line)
    if not m:
        continue
    tick, total, price, price2 = (int(x) for x in m.groups())
    if price2 != 3 * (tick % 10) - 1:
        sys.exit(f"tick {tick}: price2={price2}, the other overload changed")
    if price >= 500:
        patched += 1
        if price != 500 + tick % 10:
            sys.exit(f"tick {tick}: price={price}")
        if prev is not None and total != prev + 1002:
            sys.exit(f"tick {tick}: total={total} after {prev}, expected +1002")
    elif prev is not None and not 2 <= total - prev <= 4:
        sys.exit(f"tick {tick}: unpatched total={total} after {prev}")
    prev = total
if patched < 5:
    sys.exit("too few patched lines")
' || fail "the method or the overloads misbehaved"
status_has fix
