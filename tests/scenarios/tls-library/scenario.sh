# The fix makes the library's lib_report() read the library's thread-locals;
# each thread must see its own.
project project
start project/target
wait_for '^worker 3 tick [0-9]+$'
build_from_diff fix fix.diff
expect_replaced lib_report
[[ -f $W/fix/libtlsdemo.so.sut && ! -e $W/fix/target.sut ]] || fail "expected one patch, for libtlsdemo.so: $(ls "$W/fix")"
patch_object fix fix.o
readelf -r "$W/fix.o" | grep -E 'R_X86_64_(TLSGD|GOTTPOFF|TPOFF|DTPOFF)' >/dev/null ||
  fail "the patch has no TLS relocations"
apply fix
wait_for '^worker [0-9] tick [0-9]+ tls='
expect_no '^worker [0-9] tick [0-9]+$' 1.5
new_lines | "${PROBE[0]}" -c '
import re, sys
seen = set()
for line in sys.stdin:
    m = re.match(r"worker (\d) tick (\d+) tls=(-?\d+) label=(.*)$", line.rstrip("\n"))
    if not m:
        continue
    k, n, v, label = int(m[1]), int(m[2]), int(m[3]), m[4]
    if v != 1000 * k + n % 1000 or label != f"lib-w{k}":
        sys.exit(f"worker {k} tick {n} saw tls={v} label={label}")
    seen.add(k)
if seen != {1, 2, 3}:
    sys.exit(f"patched lines only from workers {sorted(seen)}")
' || fail "a thread read the wrong thread-locals"
status_has fix
