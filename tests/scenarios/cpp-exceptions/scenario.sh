# C++ exceptions across patched frames: check() throws below a replaced
# middle() and the exception passes through patch code (running its cleanup) to
# a catch in the target; a replaced leaf() throws from patch code through its
# register-preserving thunk; a replaced safe() catches in patch code. A second
# patch stacked on the first catches in its own code. Revert newest first, and
# the target's own throws still work. A patch refused after its tables were
# registered (a thread never leaves spin()) takes them back before unmapping
# them: the unwinder would read unmapped memory at the next throw. Then the fix of middle() and safe() again,
# from a source diff through `suture build`, which must carry the unwind records,
# exception tables and personality pointers of what it extracts. Without the
# patch's unwind tables known to the target's unwinder the first throw through
# patch code ends in std::terminate.
build target target.cc leaf.cc
fix fix fix.cc
fix fix3 fix3.cc
fix busy fix-busy.cc
suture_call pack --target "$W/target" "$W/fix.o" -o "$W/fix.sut"
expect_success pack
grep -q 'leaf.*thunk that preserves' "$LAST_ERR" ||
  fail "pack does not route leaf() through a preserving thunk (the thunk part would prove nothing)"
pack fix target
pack fix3 target
pack busy target

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
    # safe(): scale and caught value; middle(): addend; cleanups a tick; whether leaf() throws
    scale, caught, delta, step, leaf_throws = {
        "v1": (1, -2, 1, 1, False),         # the program as built
        "v2": (10, -20, 1000, 10, True),    # fix.cc
        "v3": (100, -300, 1000, 10, True),  # fix3.cc on top of fix.cc
        "d2": (10, -20, 1000, 1, False),    # fix.diff through suture build
    }[version]
    want_safe = caught if x % 4 == 0 else x * scale
    if x % 4 == 0:
        want = (-1, f"check {x}")
    elif x % 3 == 0 and leaf_throws:
        want = (-1, f"leaf_v2 {x}")
    else:
        want = (x + delta + 3 * x, "-")
    if (value, what) != want or safe != want_safe:
        sys.exit(f"{version}: tick {x}: value={value} safe={safe} what={what}, expected value={want[0]} safe={want_safe} what={want[1]}")
    if prev is not None and cleanups != prev + step:
        sys.exit(f"{version}: tick {x}: cleanups went from {prev} to {cleanups}, expected +{step}")
    prev = cleanups
    if what != "-":
        seen.add(what.split()[0])
if n < 8:
    sys.exit(f"{version}: only {n} lines to judge")
need = {"check", "leaf_v2"} if leaf_throws else {"check"}
if not need <= seen:
    sys.exit(f"{version}: no exception of kind {need - seen} was caught")
' "$1" || fail "the output does not follow $1"
}

start target
wait_for 'safe=-2 what=check'
expect_no 'terminate|what=leaf' 1.2
judge v1

apply_fails 'spin' --timeout 1 busy
wait_for 'safe=-2 what=check'
expect_no 'terminate|crash' 1.2
judge v1

apply fix
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-2 ' 1.2
judge v2
status_has fix

apply fix3
wait_for 'safe=-300 what=check'
expect_no 'terminate|safe=-20 ' 1.2
judge v3

revert fix3
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-300 ' 1.2
judge v2
status_lacks fix3

revert
wait_for 'safe=-2 what=check'
expect_no 'terminate|leaf_v2' 1.2
judge v1
status_empty

stop

# From the source diff (middle() and safe() only).
mkdir -p "$W/proj"
cp "$SCENARIO_DIR/target.cc" "$SCENARIO_DIR/leaf.cc" "$SCENARIO_DIR/project/Makefile" "$SCENARIOS/lib/scenario.h" \
  "$W/proj/"
make -s -C "$W/proj" CXX="$CXX" >/dev/null || fail "the project does not build"
start proj/server
wait_for 'safe=-2 what=check'
suture_call build --source "$W/proj" --output "$W/out" --cache "$W/cache" "$SCENARIO_DIR/fix.diff"
expect_success build
for want in 'replaces _ZN4calc6middleEi' 'replaces _ZN4calc4safeEi' 'gcc_except_table._ZN4calc4safeEi'; do
  grep -qF "$want" "$LAST_OUT" || fail "suture build does not say '$want'"
done
apply out
wait_for 'safe=-20 what=check'
expect_no 'terminate|safe=-2 ' 1.2
judge d2
revert
wait_for 'safe=-2 what=check'
expect_no 'terminate' 1.2
judge v1
stop
