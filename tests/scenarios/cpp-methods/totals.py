"""Reads the whole target log of cpp-methods on stdin: total goes on from the
object's own state, +1002 a tick once patched (step 2); price(int) becomes
500 + tick % 10; the two-argument overload is untouched (3 * (tick % 10) - 1).
Exits with a message on the first line that breaks this, or with fewer than 5
patched lines."""
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
