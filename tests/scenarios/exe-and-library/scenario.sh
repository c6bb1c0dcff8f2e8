# Patches for the executable and for a library it loads, built from one diff
# each and applied in one call: all or nothing (a refused library patch leaves
# the executable alone too), then both; then from a directory that also holds
# a patch for another program of the project (reported as skipped).
project project
start project/target
wait_for 'exe=[0-9]{1,2} lib=[0-9]{1,2}$'
build_from_diff busy exe.diff lib-busy.diff
expect_replaced exe_part lib_part lib_spin
build_from_diff good exe.diff lib.diff
expect_replaced exe_part lib_part
[[ -f $W/good/target.sut && -f $W/good/libpart.so.sut ]] || fail "expected one patch per binary: $(ls "$W/good")"
build_from_diff other other.diff
[[ -f $W/other/other.sut ]] || fail "expected a patch for the other program: $(ls "$W/other")"

apply_fails 'lib_spin' --timeout 1 busy
expect_no 'exe=1[0-9]{3}|lib=3[0-9]{3}'
status_lacks busy

apply good
wait_for 'exe=1[0-9]{3} lib=2[0-9]{3}$'
expect_no 'exe=[0-9]{1,2} |lib=[0-9]{1,2}$'
status_has good

revert
wait_for 'exe=[0-9]{1,2} lib=[0-9]{1,2}$'
expect_no 'exe=1[0-9]{3}|lib=2[0-9]{3}'
status_empty

mkdir "$W/patches"
cp "$W/good/target.sut" "$W/good/libpart.so.sut" "$W/other/other.sut" "$W/patches/"
apply patches
grep -qiE 'skip' "$LAST_OUT" "$LAST_ERR" || fail "apply DIR does not report the patch that matches nothing as skipped"
grep -qE "other\.sut|${PATCH_ID[other]}" "$LAST_OUT" "$LAST_ERR" || fail "apply DIR does not name the skipped patch"
wait_for 'exe=1[0-9]{3} lib=2[0-9]{3}$'
status_has good
status_lacks other
