# When gcc keeps only a specialised copy of a function (work.constprop.0), a
# patch for `work` must be refused with a message that names the copy; the
# author then replaces a caller instead, which works.
build target target.c
nm "$W/target" | grep -qE ' t work\.constprop\.[0-9]+$' || fail "gcc did not make work.constprop (the test would prove nothing)"
nm "$W/target" | grep -qE ' t work$' && fail "gcc kept work itself (the test would prove nothing)"
fix work fix-work.c
fix first fix-first.c
pack_fails 'kept only work\.constprop' work target
pack first target

start target
wait_for 'first=[0-9]+$'
apply first
wait_for 'first=1000[0-4][0-9]$'
expect_no 'first=([0-9]{1,5}|[0-9]*[1-9][0-9]{6,})$'
status_has first
