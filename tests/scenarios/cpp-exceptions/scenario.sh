# C++ exceptions across patched frames: check() throws below a replaced
# middle() and the exception passes through patch code (running its cleanup) to
# a catch in the target; a replaced leaf() throws from patch code through its
# register-preserving thunk; a replaced safe() catches in patch code. A second
# patch stacked on the first catches in its own code. Revert newest first, and
# the target's own throws still work. Without the patch's unwind tables known to
# the target's unwinder the first throw through patch code ends in
# std::terminate.
build target target.cc leaf.cc
fix fix fix.cc
fix fix3 fix3.cc
suture_call pack --target "$W/target" "$W/fix.o" -o "$W/fix.sut"
expect_success pack
grep -q 'leaf.*thunk that preserves' "$LAST_ERR" ||
  fail "pack does not route leaf() through a preserving thunk (the thunk part would prove nothing)"
pack fix target
pack fix3 target

# judge VERSION: every line of the output since the last step follows VERSION's
# rules, and the output holds each kind of throw that VERSION catches.
judge() {
  new_lines | "${PROBE[0]}" -c '
import re, sys
version = sys.argv[1]
prev = None
seen = set()
n = 0
for line in sys.stdin:
    m = re.match(r"tick (\d+) value=(-?\d+) safe=(-?\d+) what=(.*) cleanups=(\d+)$", line.rstrip("\n"))
    if not m:
        continue
    x, value, safe, what, cleanups = int(m[1]), int(m[2]), int(m[3]), m[4], int(m[5])
    n += 1
    scale, caught = {"v1": (1, -2), "v2": (10, -20), "v3": (100, -300)}[version]
    want_safe = caught if x % 4 == 0 else x * scale
    if x % 4 == 0:
        want = (-1, f"check {x}")
    elif x % 3 == 0 and version != "v1":
        want = (-1, f"leaf_v2 {x}")
    else:
        want = ((x + 1 if version == "v1" else x + 1000) + 3 * x, "-")
    if (value, what) != want or safe != want_safe:
        sys.exit(f"{version}: tick {x}: value={value} safe={safe} what={what}, expected value={want[0]} safe={want_safe} what={want[1]}")
    step = 1 if version == "v1" else 10
    if prev is not None and cleanups != prev + step:
        sys.exit(f"{version}: tick {x}: cleanups went from {prev} to {cleanups}, expected +{step}")
    prev = cleanups
    if what != "-":
        seen.add(what.split()[0])
if n < 8:
    sys.exit(f"{version}: only {n} lines to judge")
need = {"check"} if version == "v1" else {"check", "leaf_v2"}
if not need <= seen:
    sys.exit(f"{version}: no exception of kind {need - seen} was caught")
' "$1" || fail "the output does not follow $1"
}

start target
wait_for 'safe=-2 what=check'
expect_no 'terminate|what=leaf' 1.5
judge v1

apply fix
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-2 ' 1.5
judge v2
status_has fix

apply fix3
wait_for 'safe=-300 what=check'
expect_no 'terminate|safe=-20 ' 1.5
judge v3

revert fix3
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-300 ' 1.5
judge v2
status_lacks fix3

revert
wait_for 'safe=-2 what=check'
expect_no 'terminate|leaf_v2' 1.5
judge v1
status_empty

# Again, so that a second registration follows a deregistration.
apply fix
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-2 ' 1.5
judge v2
revert
wait_for 'safe=-2 what=check'
expect_no 'terminate|leaf_v2' 1.5
judge v1
stop
