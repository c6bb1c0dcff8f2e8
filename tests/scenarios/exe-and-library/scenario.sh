# Patches for the executable and for a library it loads, applied in one call:
# all or nothing (a refused library patch leaves the executable alone too),
# then both; then from a directory that also holds a patch for another binary
# (reported as skipped).
build_lib libpart.so lib.c
build target main.c -L"$W" -lpart -Wl,-rpath,"$W"
build other other.c
fix exe exe-fix.c
fix lib lib-fix.c
fix lib-busy lib-busy-fix.c
fix other-exe exe-fix.c
pack exe target
pack lib libpart.so
pack lib-busy libpart.so
pack other-exe other

start target
wait_for 'exe=[0-9]{1,2} lib=[0-9]{1,2}$'
apply_fails 'lib_spin' --timeout 1 exe lib-busy
expect_no 'exe=1[0-9]{3}|lib=3[0-9]{3}'
status_lacks exe lib-busy

apply exe lib
wait_for 'exe=1[0-9]{3} lib=2[0-9]{3}$'
expect_no 'exe=[0-9]{1,2} |lib=[0-9]{1,2}$'
status_has exe lib

revert
wait_for 'exe=[0-9]{1,2} lib=[0-9]{1,2}$'
expect_no 'exe=1[0-9]{3}|lib=2[0-9]{3}'
status_empty

mkdir "$W/patches"
cp "$W/exe.sut" "$W/lib.sut" "$W/other-exe.sut" "$W/patches/"
apply patches
grep -qiE 'skip' "$LAST_OUT" "$LAST_ERR" || fail "apply DIR does not report the patch that matches nothing as skipped"
grep -qE "other-exe|${PATCH_ID[other-exe]}" "$LAST_OUT" "$LAST_ERR" || fail "apply DIR does not name the skipped patch"
wait_for 'exe=1[0-9]{3} lib=2[0-9]{3}$'
status_has exe lib
status_lacks other-exe
