# gcc keeps only a specialised copy of work() (work.constprop.0). A
# hand-written patch for `work` is refused with a message that names the copy.
# The fix as a diff of work() is what a developer writes: the patch built from
# it follows the change into the copy, and both callers (first and second)
# run the new code.
project project
nm "$PROJECT/target" | grep -qE ' t work\.constprop\.[0-9]+$' || fail "gcc did not make work.constprop (the test would prove nothing)"
nm "$PROJECT/target" | grep -qE ' t work$' && fail "gcc kept work itself (the test would prove nothing)"
fix work fix-work.c
pack_fails 'kept only work\.constprop' work project/target

start project/target
wait_for 'first=[0-9]+$'
build_from_diff fix fix.diff
expect_replaced work.constprop.0
apply fix
wait_for 'first=10[01][0-9]{3}$'
expect_no 'first=[0-9]{1,5}$'
# Every patched line is the new work()'s: first = work(x, 3) + x and value =
# (work(x + 1, 3) + 2x) % 1000 for x = tick % 50, work now adding 100000.
new_lines | "${PROBE[0]}" -c '
import re, sys
def work(x, mode):
    s = 0
    for i in range(x):
        s = (s + ((i * mode) ^ (s >> 3)) + 2**31) % 2**32 - 2**31
    return 100000 + s
n = 0
for line in sys.stdin:
    m = re.match(r"tick (\d+) value=(\d+) first=(\d+)$", line)
    if not m:
        continue
    x, value, first = int(m[1]) % 50, int(m[2]), int(m[3])
    if first != work(x, 3) + x or value != (work(x + 1, 3) + 2 * x) % 1000:
        sys.exit(f"{line.strip()}: expected value={(work(x + 1, 3) + 2 * x) % 1000} first={work(x, 3) + x}")
    n += 1
if n < 10:
    sys.exit(f"only {n} patched lines")
' || fail "a caller of work.constprop.0 does not run the new code"
status_has fix
