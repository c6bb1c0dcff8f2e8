#!/usr/bin/python3
"""Steady-state cost of a patched function: calls per second of a hot function
unpatched, through the entry jump, and through a preserving thunk, measured in
one process (see hot.c for the method).

    cmake --build build --target suture
    bench/redirect-cost/run.py --suture build/src/cli/suture [--rounds 21] [--mode MODE]

Builds hot.c (cc -O2, PIE, as a distribution would) and hot-patch.c, packs the
patch, checks from pack's notes that hot_jump is redirected without a thunk and
hot_thunk through one, starts the target pinned to one CPU, lets it measure,
applies the patch (suture pinned to another CPU when there is one), lets it
measure again, and prints per function: median ns/call before and after, calls
per second, and the ratio patched / unpatched for the same function. hot_plain
is never patched: its ratio is the machine's own drift between the phases, and the
last column divides each ratio by it.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "include")
FUNCS = ["hot_plain", "hot_jump", "hot_thunk"]


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def pinned(cmd, cpu):
    return (["taskset", "-c", str(cpu)] + cmd) if cpu is not None else cmd


def build(args, work):
    target, obj, sut = (os.path.join(work, n) for n in ("hot", "hot-patch.o", "hot.sut"))
    run(["cc", "-O2", "-g", os.path.join(HERE, "hot.c"), "-o", target])
    run(["cc", "-c", "-O2", "-fPIC", "-I", INCLUDE, os.path.join(HERE, "hot-patch.c"), "-o", obj])
    notes = subprocess.run([args.suture, "pack", "--target", target, obj, "-o", sut], check=True,
                           capture_output=True, text=True)
    said = notes.stdout + notes.stderr
    thunked = {f for f in FUNCS if f"{f} leaves" in said and "thunk" in said}
    if thunked != {"hot_thunk"}:
        sys.exit(f"redirect-cost: expected pack to put a thunk before hot_thunk only, it said:\n{said}")
    return target, sut, said.strip()


def median_table(phase):
    return {f: statistics.median(v) for f, v in phase["ns_per_call"].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suture", required=True)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--calls", type=int, default=20_000_000, help="calls per function per round")
    ap.add_argument("--mode", help="passed to suture apply as --mode (default: suture's default)")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--markdown", default=os.path.join(os.path.dirname(HERE), "README.md"),
                    help="file whose generated table (between the redirect-cost markers) is replaced")
    args = ap.parse_args()
    args.suture = os.path.abspath(args.suture)
    ncpu = os.cpu_count() or 1
    target_cpu, suture_cpu = (0, 1) if ncpu >= 2 else (None, None)
    with tempfile.TemporaryDirectory(prefix="suture-redirect-cost-") as work:
        target, sut, pack_notes = build(args, work)
        proc = subprocess.Popen(pinned([target, str(args.rounds), str(args.calls)], target_cpu),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            before = json.loads(proc.stdout.readline())
            if proc.stdout.readline().strip() != "ready":
                sys.exit("redirect-cost: the target did not say ready")
            cmd = [args.suture, "apply", str(proc.pid), sut, "--json"]
            if args.mode:
                cmd[2:2] = ["--mode", args.mode]
            applied = json.loads(run(pinned(cmd, suture_cpu)))
            proc.stdin.write("go\n")
            proc.stdin.flush()
            after = json.loads(proc.stdout.readline())
        finally:
            proc.stdin.close()
            proc.wait(timeout=600)
    b, a = median_table(before), median_table(after)
    rows = []
    for f in FUNCS:
        how = {"hot_plain": "not patched (the machine's drift)", "hot_jump": "entry jump",
               "hot_thunk": "entry jump + preserving thunk"}[f]
        rows.append({"function": f, "how": how, "before_ns": b[f], "after_ns": a[f],
                     "before_calls_per_s": 1e9 / b[f], "after_calls_per_s": 1e9 / a[f],
                     "ratio": b[f] / a[f],
                     "spread_before_ns": [min(before["ns_per_call"][f]), max(before["ns_per_call"][f])],
                     "spread_after_ns": [min(after["ns_per_call"][f]), max(after["ns_per_call"][f])]})
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{ncpu} cores, {os.uname().release}",
            "rounds": args.rounds, "calls_per_round": args.calls, "mode": args.mode or "default",
            "loadavg": " ".join(f"{v:.1f}" for v in os.getloadavg()),
            "apply": {k: applied.get(k) for k in ("pause_us", "total_us", "threads")}, "pack_notes": pack_notes}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows, "before": before, "after": after}, f, indent=2)
    lines = [f"Measured {meta['date']} on {meta['machine']}, target on CPU {target_cpu}, suture on CPU "
             f"{suture_cpu}, apply mode: {meta['mode']}; {args.rounds} rounds of {args.calls:,} dependent calls per "
             f"function, medians (min–max over rounds); load average {meta['loadavg']}.", "",
             "| function | call path after the patch | ns/call before | ns/call after | calls/s after | "
             "calls/s after / before | the same / hot_plain's |", "|---|---|---:|---:|---:|---:|---:|"]
    drift = rows[0]["ratio"]
    for r in rows:
        lines.append(f"| `{r['function']}` | {r['how']} | {r['before_ns']:.2f} ({r['spread_before_ns'][0]:.2f}–"
                     f"{r['spread_before_ns'][1]:.2f}) | {r['after_ns']:.2f} ({r['spread_after_ns'][0]:.2f}–"
                     f"{r['spread_after_ns'][1]:.2f}) | {r['after_calls_per_s'] / 1e6:.0f} M | {r['ratio']:.3f} | {r['ratio'] / drift:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_table(args.markdown, text)


START, END = "<!-- redirect-cost: table start -->", "<!-- redirect-cost: table end -->"


def write_table(path, text):
    """Replace the generated part of PATH (between the markers), keeping the prose around it."""
    with open(path) as f:
        old = f.read()
    if START not in old or END not in old:
        sys.exit(f"redirect-cost: {path} has no {START} ... {END} markers for the table")
    with open(path, "w") as f:
        f.write(old[:old.index(START)] + f"{START}\n{text}{END}" + old[old.index(END) + len(END):])


if __name__ == "__main__":
    main()
