# The fix calls libc (snprintf, puts) with string literals of its own.
project project
start project/target
wait_for 'hello from v1$'
build_from_diff fix fix.diff
expect_replaced greet
apply fix
wait_for '^tick [0-9]+: bonjour from the patch, an (odd|even) tick$'
expect_no 'hello from v1'
new_lines | awk '
  /bonjour/ { tick = $2 + 0; want = (tick % 2) ? "odd" : "even"
              if ($0 !~ ("an " want " tick$")) { print "wrong: " $0; bad = 1 }; n++ }
  END { exit bad || n == 0 }' || fail "the patch formatted its string wrongly"
status_has fix
