# Thread A's function is patched; thread B's output must not change.
project project
nm "$PROJECT/target" | grep ' T step_b$' >/dev/null || fail "step_b was folded or inlined"
start project/target
wait_for '^A tick [0-9]+ value=[0-9]{1,2}$'
wait_for '^B tick [0-9]+ value=[0-9]{1,2}$'
build_from_diff fix fix.diff
expect_replaced step_a
apply fix
wait_for '^A tick [0-9]+ value=5[0-9]{3}$'
expect_no '^A tick [0-9]+ value=[0-9]{1,2}$|^B tick [0-9]+ value=5[0-9]{3}$' 1.5
# B must still print, with values computed by step_b as before.
new_lines | "${PROBE[0]}" -c '
import re, sys
na = nb = 0
for line in sys.stdin:
    m = re.match(r"([AB]) tick (\d+) value=(\d+)$", line)
    if not m:
        continue
    n, v = int(m[2]), int(m[3])
    if m[1] == "A":
        na += 1
        continue
    nb += 1
    x = n ^ (n >> 3)
    x = (x * 2246822519) % 2**32
    if v != x % 100:
        sys.exit(f"B tick {n}: value {v}, expected {x % 100}")
if na < 10 or nb < 10:
    sys.exit(f"too few lines: A {na}, B {nb}")
' || fail "thread B's output changed, or a thread stopped printing"
status_has fix
