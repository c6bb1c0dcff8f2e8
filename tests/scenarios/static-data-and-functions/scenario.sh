# bump ends in a tail call to the static scaled(): in the user's build (one
# .text) the assembler makes it a 2-byte jmp, in the rebuild
# (-ffunction-sections) a 5-byte jmp with a relocation; suture build's fidelity
# check must take the two for the same instruction.
# Two source files each have `static int count`, `static int scaled(int)` and
# `static int bump(void)`. The fix changes a.c's bump; the patch built from it
# replaces a.c's bump (not b.c's) and uses a.c's count and scaled of the
# running program: the count goes on from where it was.
project project
for sym in count scaled bump; do
  [[ $(nm "$PROJECT/target" | grep -cE " [tTbBdD] $sym\$") -eq 2 ]] ||
    fail "the target should have two static '$sym' (one per file)"
done
start project/target
wait_for 'a=[0-9]+ b=[0-9]+$'
build_from_diff fix fix.diff
expect_replaced bump
apply fix
wait_for 'a=-[0-9]+ b=[0-9]+$'
expect_no 'a=[0-9]'
"${PROBE[@]}" lines "$LOG" 0 | awk -f "$SCENARIO_DIR/counts.awk" || fail "a or b did not go on as they should"
status_has fix
