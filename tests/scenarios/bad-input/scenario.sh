# Every kind of bad input gets a one-line "suture: error: ..." that says what is
# wrong, a non-zero exit, and leaves the target exactly as it was.
build target target.c
build other-build target.c -DOTHER_BUILD
build exiter exiter.c
fix fix fix.c
pack fix target
fix other fix.c
pack other other-build
for bad in short nosym unresolved; do fix "$bad" "fix-$bad.c"; done
fix exiter-fix fix-exiter.c
pack exiter-fix exiter

# Checked when packing.
pack_fails 'tiny_hook' short target
grep -qiE 'short|small|bytes|size' "$LAST_ERR" || fail "the refusal does not say the function is too short"
pack_fails 'no_such_function' nosym target
pack_fails 'undefined_helper_xyz' unresolved target

# Files that are not (whole) patches. hostile-*: the header's own format (see
# src/patchfile/patch-file.h) with lying lengths, or with a good checksum over
# metadata and an object that are garbage.
printf 'this is not a suture patch\n%.0s' {1..40} >"$W/garbage.sut"
: >"$W/empty.sut"
size=$(stat -c %s "$W/fix.sut")
head -c $((size / 2)) "$W/fix.sut" >"$W/truncated.sut"
"${PROBE[0]}" - "$W" <<'PY'
import struct, sys
w = sys.argv[1]
good = open(f"{w}/fix.sut", "rb").read()
corrupt = bytearray(good)
corrupt[len(good) - 40] ^= 0x5A
open(f"{w}/corrupt.sut", "wb").write(corrupt)

def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) % 2**64
    return h

def patch(meta, obj, meta_len=None, obj_len=None):
    body = meta + obj
    return (b"SUTUREPT" + struct.pack("<IIQQ", 1, len(meta) if meta_len is None else meta_len,
            len(obj) if obj_len is None else obj_len, fnv1a64(body)) + body)

open(f"{w}/hostile-lengths.sut", "wb").write(patch(b"{}", b"\x7fELF", 0xFFFFFFFF, 2**63))
open(f"{w}/hostile-content.sut", "wb").write(
    patch(b'{"id": [[[[[[', b"\x7fELF\x02\x01\x01" + b"\xff" * 57))
PY

start target
wait_for 'value=[0-9]{1,2}$'
for bad in garbage empty truncated corrupt hostile-lengths hostile-content no-such-file; do
  apply_fails "${bad}\\.sut" "$W/$bad.sut"
  expect_one_line_error
done

# A patch for another build of the program.
apply_fails 'build.?id|matches no|no (loaded )?object|not loaded|does not match' other
expect_one_line_error

# A process that is not there.
true &
gone=$!
wait "$gone"
suture_call apply "$gone" "$W/fix.sut"
expect_refusal apply "\\b$gone\\b"
expect_one_line_error

# A process we may not trace: suture as nobody, the target as root.
if [[ $(id -u) -eq 0 ]]; then
  nobody_dir=$(mktemp -d) # readable by nobody, whatever the build tree's modes
  CLEANUP_PATHS+=("$nobody_dir")
  cp "$SUTURE" "$W/fix.sut" "$nobody_dir/"
  chmod -R a+rX "$nobody_dir"
  SUTURE_WRAPPER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  saved_suture=$SUTURE
  SUTURE=$nobody_dir/$(basename "$SUTURE")
  apply_fails 'permi|not allowed|ptrace|EPERM' "$nobody_dir/fix.sut"
  expect_one_line_error
  SUTURE=$saved_suture
  SUTURE_WRAPPER=()
else
  say "SKIP the untraceable-target step: it needs root to run suture as another user"
fi

expect_no 'value=1[0-9]{3}$'
status_empty
stop

# A target that exits by itself while apply waits for its busy thread: suture
# says so promptly, and the target's own exit status is untouched.
start exiter
suture_call apply --timeout 10 "$TARGET_PID" "$W/exiter-fix.sut"
expect_refusal apply 'exit|gone|no longer|terminated|vanished|no such process|disappeared|not exist|died'
expect_one_line_error
expect_quick 5
wait_exit 0 5
grep -q '^exiting on my own$' "$LOG" || fail "the exiter did not end by itself"
