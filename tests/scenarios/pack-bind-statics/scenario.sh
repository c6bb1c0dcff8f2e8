# static-data-and-functions with a hand-written patch: SUTURE_REPLACE names
# a.c's static bump as `a.c:bump`, and SUTURE_BIND gives the patch a.c's
# static count and static scaled under names of its own.
build target ../static-data-and-functions/project/main.c ../static-data-and-functions/project/a.c \
  ../static-data-and-functions/project/b.c
for sym in count scaled bump; do
  [[ $(nm "$W/target" | grep -cE " [tTbBdD] $sym\$") -eq 2 ]] ||
    fail "the target should have two static '$sym' (one per file)"
done
fix fix fix.c
pack fix target

start target
wait_for 'a=[0-9]+ b=[0-9]+$'
apply fix
wait_for 'a=-[0-9]+ b=[0-9]+$'
expect_no 'a=[0-9]'
"${PROBE[@]}" lines "$LOG" 0 | awk -f "$SCENARIOS/static-data-and-functions/counts.awk" ||
  fail "a or b did not go on as they should"
status_has fix
