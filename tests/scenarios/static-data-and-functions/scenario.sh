# NOT REGISTERED YET (pack-bind-statics covers the behaviour with a
# hand-written patch): suture build's fidelity check refuses bump: "bump in the
# original rebuild is not the code that runs: +0xf: size 20 in the rebuild, 17
# in the binary; first difference at +0xf: byte 0xe9 in the rebuild, 0xeb in
# the binary". bump ends in a tail call to the static scaled(): in the user's
# build (one .text) the assembler resolves it as a 2-byte jmp; in the rebuild
# (-ffunction-sections) it is a 5-byte jmp with a relocation.
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
