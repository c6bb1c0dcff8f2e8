#!/usr/bin/env python3
"""Pause and total time of `suture apply` and `suture revert` against a program with
N threads and M patched functions.

For each (N, M) this generates a target whose threads behave like server threads
(call the M functions, then block in nanosleep for --sleep-us, default 10 ms), a patch that
replaces all M functions, applies it and reverts it REPEAT times, and reads the
pause (the longest time any thread was held) and the total time from
`suture ... --json`. Results: a Markdown table on stdout (or --markdown FILE) and
JSON (--json FILE).

    bench/apply-pause.py --suture build/src/cli/suture [--threads 1,8,64,512]
                         [--functions 1,10,100] [--repeat 5]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(os.path.dirname(HERE), "include")


def target_source(threads, functions, sleep_us):
    funcs = "\n".join(
        f"__attribute__((noinline)) long f{i}(long x) {{ long y = x * {i + 3} + 1; "
        f"for (int k = 0; k < 8; ++k) y = (y << 1) ^ (y >> 3) ^ k; return y + counter; }}"
        for i in range(functions))
    calls = " + ".join(f"f{i}(n)" for i in range(functions))
    return f"""
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
volatile long counter;
volatile long sink;
{funcs}
static void *worker(void *arg) {{
  long n = (long)arg;
  struct timespec ts = {{0, {sleep_us * 1000}}};
  for (;;) {{ sink = {calls}; ++n; nanosleep(&ts, NULL); }}
  return NULL;
}}
int main(void) {{
  pthread_t t;
  for (long i = 0; i < {threads}; ++i)
    if (pthread_create(&t, NULL, worker, (void *)i) != 0) {{ perror("pthread_create"); return 1; }}
  printf("ready\\n"); fflush(stdout);
  for (;;) pause();
}}
"""


def fix_source(functions):
    lines = ["#include <suture/patch.h>", "extern volatile long counter;"]
    for i in range(functions):
        lines.append(f"long new_f{i}(long x) {{ return x * {i + 5} + counter; }}")
        lines.append(f"SUTURE_REPLACE(f{i}, new_f{i});")
    return "\n".join(lines) + "\n"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def measure(suture, threads, functions, repeat, work, sleep_us):
    src, exe = os.path.join(work, "target.c"), os.path.join(work, "target")
    fix_c, fix_o, fix_sut = (os.path.join(work, n) for n in ("fix.c", "fix.o", "fix.sut"))
    with open(src, "w") as f:
        f.write(target_source(threads, functions, sleep_us))
    with open(fix_c, "w") as f:
        f.write(fix_source(functions))
    run(["cc", "-O2", "-pthread", "-o", exe, src])
    run(["cc", "-c", "-O2", "-fPIC", "-I", INCLUDE, "-o", fix_o, fix_c])
    run([suture, "pack", "--target", exe, fix_o, "-o", fix_sut])
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        time.sleep(0.2)
        rows = []
        for _ in range(repeat):
            a = json.loads(run([suture, "apply", "--json", str(proc.pid), fix_sut]).stdout)
            r = json.loads(run([suture, "revert", "--json", str(proc.pid)]).stdout)
            rows.append({"apply_pause_us": a["pause_us"], "apply_total_us": a["total_us"],
                         "revert_pause_us": r["pause_us"], "revert_total_us": r["total_us"],
                         "threads_held": a["threads"]})
        if proc.poll() is not None:
            raise RuntimeError("target died during the benchmark")
        return rows
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suture", required=True)
    ap.add_argument("--threads", default="1,8,64,512")
    ap.add_argument("--functions", default="1,10,100")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sleep-us", type=int, default=10000, help="how long each thread blocks between rounds")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="suture-bench-")
    results = []
    try:
        for n in map(int, args.threads.split(",")):
            for m in map(int, args.functions.split(",")):
                rows = measure(os.path.abspath(args.suture), n, m, args.repeat, work, args.sleep_us)
                med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                mx = {k: max(r[k] for r in rows) for k in rows[0]}
                results.append({"threads": n, "functions": m, "median": med, "max": mx, "runs": rows})
                print(f"threads={n} functions={m} apply pause {med['apply_pause_us']/1000:.2f} ms "
                      f"total {med['apply_total_us']/1000:.1f} ms; revert pause {med['revert_pause_us']/1000:.2f} ms "
                      f"total {med['revert_total_us']/1000:.1f} ms", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = ["| threads | functions | apply pause (ms) | apply total (ms) | revert pause (ms) | revert total (ms) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        m, x = r["median"], r["max"]
        table.append(f"| {r['threads']} | {r['functions']} | {m['apply_pause_us']/1000:.2f} (max {x['apply_pause_us']/1000:.2f}) "
                     f"| {m['apply_total_us']/1000:.1f} | {m['revert_pause_us']/1000:.2f} (max {x['revert_pause_us']/1000:.2f}) "
                     f"| {m['revert_total_us']/1000:.1f} |")
    text = "\n".join(table) + "\n"
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
