#!/usr/bin/python3
"""Open-loop latency of a busy server around one instant: nothing (baseline), a live
patch (`suture apply`, stop-the-world), or a restart -- for Redis and memcached.

Each scenario starts the load generator (suture-loadgen: constant rate, latency of
every request measured from its intended send time, so a stall is charged to every
request scheduled during it), waits until AT seconds into the run, does its action,
and lets the load run to DURATION. Reported per scenario, within +-WINDOW/2 of the
instant: failed requests (error replies, lost on a closed connection, dropped while
the server refused connections, unanswered), max / p99 / p99.9 / p99.99 latency of
the answered requests, requests slower than 1 ms, and suture's own pause; plus a PNG
of per-millisecond max latency. Also: the baseline run twice (run-to-run noise) and a
closed-loop redis-benchmark run with the same apply, to show what it misses.

    cmake --build build --target suture suture-loadgen
    bench/live/run.py --suture build/src/cli/suture --loadgen build/bench/live/suture-loadgen

Needs Debian's redis-server, redis-tools, memcached and python3-matplotlib. Uses
CPU 0 for the server and CPU 1 for the load generator when there are two cores.
Debian's memcached binary is stripped, so it cannot be patched yet: its patch row
says so instead of a number.
"""
import argparse
import csv
import datetime
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "include")
RECORD = np.dtype([("intended", "<i8"), ("latency", "<i8"), ("status", "u1"), ("op", "u1"),
                   ("conn", "<u2"), ("send_lag_us", "<u4")])
STATUS = ["ok", "error", "lost", "dropped", "unanswered"]
COUNTER_TAG = 0x5443544547545553  # redis-get-counter.c


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cmd, cpu):
    return (["taskset", "-c", str(cpu)] + cmd) if cpu is not None else cmd


# --- servers -------------------------------------------------------------------

class Redis:
    """Debian's redis-server with an RDB of KEYS keys in WORK, reloaded on restart."""
    protocol = "redis"

    def __init__(self, work, keys, cpu):
        self.work, self.keys, self.cpu, self.port = work, keys, cpu, free_port()
        self.proc = None
        self.log = open(os.path.join(work, "redis.log"), "a")

    def cli(self, *args):
        return run(["redis-cli", "-p", str(self.port)] + list(args)).stdout.strip()

    def start(self):
        self.proc = subprocess.Popen(pinned(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.work, "--dbfilename", "dump.rdb",
             "--enable-debug-command", "local"], self.cpu), stdout=self.log, stderr=self.log)
        self.wait_ready()

    def wait_ready(self, timeout=60):
        """Until PING answers PONG (not refused, not -LOADING), polled every 10 ms."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited; see redis.log")
            time.sleep(0.01)
        raise RuntimeError("redis-server did not become ready")

    def populate(self):
        t = time.time()
        self.cli("debug", "populate", str(self.keys), "key", "32")
        populate_s = time.time() - t
        t = time.time()
        if self.cli("save") != "OK":
            raise RuntimeError("SAVE failed")
        return {"populate_s": round(populate_s, 3), "save_s": round(time.time() - t, 3),
                "rdb_bytes": os.path.getsize(os.path.join(self.work, "dump.rdb"))}

    def digest(self):
        return self.cli("debug", "digest")

    def restart(self):
        """What a user does today: SIGTERM, wait for the exit, start again (RDB reload)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        exited = mono_ns()
        self.proc = subprocess.Popen(pinned(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.work, "--dbfilename", "dump.rdb",
             "--enable-debug-command", "local"], self.cpu), stdout=self.log, stderr=self.log)
        self.wait_ready()
        return {"exited_ns": exited, "ready_ns": mono_ns()}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Memcached:
    """Debian's memcached with its item memory in a file on tmpfs (-e), so that a
    SIGUSR1 shutdown followed by a start with the same file is a warm restart."""
    protocol = "memcache"

    def __init__(self, work, keys, cpu):
        self.keys, self.cpu, self.port = keys, cpu, free_port()
        self.memfile = f"/dev/shm/suture-bench-memcached-{os.getpid()}"
        self.proc = None
        self.log = open(os.path.join(work, "memcached.log"), "a")

    def cmd(self):
        return pinned(["memcached", "-p", str(self.port), "-l", "127.0.0.1", "-U", "0", "-u", "root",
                       "-m", "512", "-t", "4", "-c", "1024", "-e", self.memfile], self.cpu)

    def request(self, data, until):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(data)
            buf = b""
            while not buf.endswith(until):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf

    def start(self):
        self.proc = subprocess.Popen(self.cmd(), stdout=self.log, stderr=self.log)
        self.wait_ready()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.request(b"version\r\n", b"\r\n").startswith(b"VERSION"):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("memcached exited; see memcached.log")
            time.sleep(0.01)
        raise RuntimeError("memcached did not become ready")

    def populate(self):
        """key:I -> "value:I" padded with NULs to 32 bytes, like Redis's DEBUG POPULATE."""
        t = time.time()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            for lo in range(0, self.keys, 10000):
                hi = min(lo + 10000, self.keys)
                batch = b"".join(b"set key:%d 0 0 32\r\n%s\r\n" % (i, (b"value:%d" % i).ljust(32, b"\0"))
                                 for i in range(lo, hi))
                s.sendall(batch)
                want, buf = (hi - lo) * len(b"STORED\r\n"), b""
                while len(buf) < want:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("memcached closed the connection while populating")
                    buf += chunk
                if buf != b"STORED\r\n" * (hi - lo):
                    raise RuntimeError(f"populate: unexpected reply {buf[:60]!r}")
        return {"populate_s": round(time.time() - t, 3)}

    def items(self):
        stats = self.request(b"stats\r\n", b"END\r\n").decode()
        return int(next(l.split()[2] for l in stats.splitlines() if l.startswith("STAT curr_items ")))

    def restart(self):
        """memcached's warm restart: SIGUSR1 saves the metadata and exits (at its next
        clock tick, up to 1 s later); the new process maps the same memory file and
        finds the items. memcached 1.6.18 rejects the metadata ("restart incompatible
        due to setting for [stop_time]") when started within the wall-clock second it
        stopped in, so the fastest valid restart waits for the next second."""
        self.proc.send_signal(signal.SIGUSR1)
        self.proc.wait()
        exited, stop_second = mono_ns(), int(time.time())
        time.sleep(max(0.0, stop_second + 1 - time.time()) + 0.001)
        self.proc = subprocess.Popen(self.cmd(), stdout=self.log, stderr=self.log)
        started = mono_ns()
        self.wait_ready()
        return {"exited_ns": exited, "started_ns": started, "ready_ns": mono_ns()}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.memfile, self.memfile + ".meta"):
            if os.path.exists(f):
                os.remove(f)


# --- one run -------------------------------------------------------------------

def load_run(args, server, name, action, work):
    """Drive SERVER for args.duration seconds; at args.at call ACTION() (after SIGUSR1
    to the generator, which records the instant). Returns the raw run."""
    out = os.path.join(work, name + ".bin")
    cmd = [args.loadgen, "--port", str(server.port), "--protocol", server.protocol,
           "--connections", str(args.connections), "--rate", str(args.rate),
           "--duration", str(args.duration), "--keys", str(server.keys), "--out", out]
    if args.loadgen_cpu is not None:
        cmd += ["--cpu", str(args.loadgen_cpu)]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ready = gen.stdout.readline().split()
    if len(ready) != 2 or ready[0] != "ready":
        gen.wait()
        raise RuntimeError(f"{name}: load generator did not start")
    t0 = int(ready[1])
    time.sleep(max(0, (t0 + int(args.at * 1e9) - mono_ns()) / 1e9))
    gen.send_signal(signal.SIGUSR1)
    start = mono_ns()
    detail = action() or {}
    end = mono_ns()
    summary = json.loads(gen.stdout.readline())
    if gen.wait() != 0:
        raise RuntimeError(f"{name}: load generator failed")
    records = np.fromfile(out, dtype=RECORD)
    if not args.keep:
        os.remove(out)
    instant = summary["events_ns"][0] if summary["events_ns"] else start - t0
    return {"name": name, "summary": summary, "records": records, "instant_ns": instant,
            "action_start_ns": start - t0, "action_end_ns": end - t0,
            "detail": {k: (v - t0 if k.endswith("_ns") else v) for k, v in detail.items()}}


def pct(values, q):
    return float(np.percentile(values, q, method="higher")) if len(values) else float("nan")


def window_bounds(r, window_s):
    """From WINDOW/2 before the action started to WINDOW/2 after it ended (for a
    baseline the action is empty, so this is the second around the instant)."""
    half = int(window_s * 1e9 / 2)
    return min(r["instant_ns"], r["action_start_ns"]) - half, r["action_end_ns"] + half


def analyse(r, window_s):
    rec = r["records"]
    lo, hi = window_bounds(r, window_s)
    win = rec[(rec["intended"] >= lo) & (rec["intended"] < hi)]
    ok = win[win["status"] == 0]["latency"] / 1000.0
    all_ok = rec[rec["status"] == 0]["latency"] / 1000.0
    failed = rec[rec["status"] != 0]
    res = {
        "requests": int(len(rec)),
        "failed": {s: int((rec["status"] == i).sum()) for i, s in enumerate(STATUS) if i},
        "window_requests": int(len(win)),
        "window_failed": int((win["status"] != 0).sum()),
        "max_us": float(ok.max()) if len(ok) else float("nan"),
        "p99_us": pct(ok, 99), "p999_us": pct(ok, 99.9), "p9999_us": pct(ok, 99.99),
        "mean_us": float(ok.mean()) if len(ok) else float("nan"),
        "window_over_1ms": int((ok > 1000).sum()),
        "run_over_1ms": int((all_ok > 1000).sum()),
        "run_p999_us": pct(all_ok, 99.9), "run_max_us": float(all_ok.max()) if len(all_ok) else float("nan"),
        "window_s": round((hi - lo) / 1e9, 3),
        "window_max_send_lag_us": float(win[win["status"] != 3]["send_lag_us"].max()) if len(win) else 0.0,
        "generator_max_send_lag_us": r["summary"]["max_send_lag_us"],
        "generator_late_sends": r["summary"]["late_sends_over_100us"],
    }
    if len(failed):
        res["failed_span_ms"] = round((failed["intended"].max() - failed["intended"].min()) / 1e6, 1)
    res["total_failed"] = sum(res["failed"].values())
    return res


def plot(r, stats, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rec, inst = r["records"], r["instant_ns"]
    ms = (rec["intended"] // 1_000_000).astype(np.int64)
    nbins = int(ms.max()) + 1
    worst = np.zeros(nbins)
    okm = rec["status"] == 0
    np.maximum.at(worst, ms[okm], rec["latency"][okm] / 1000.0)
    bad = np.zeros(nbins, dtype=np.int64)
    np.add.at(bad, ms[~okm], 1)
    lag = np.zeros(nbins)
    sent = rec["status"] != 3
    np.maximum.at(lag, ms[sent], rec["send_lag_us"][sent].astype(float))
    x = np.arange(nbins) / 1000.0
    wlo, whi = window_bounds(r, 1.0)
    fig, axes = plt.subplots(2, 1, figsize=(11, 7))
    for ax, (lo, hi) in zip(axes, [(0, nbins / 1000.0), (wlo / 1e9, whi / 1e9)]):
        sel = (x >= lo) & (x < hi)
        ax.plot(x[sel], np.where(worst[sel] > 0, worst[sel], np.nan), lw=0.6, color="tab:blue", label="max latency in the ms (answered)")
        ax.plot(x[sel], np.where(lag[sel] > 0, lag[sel], np.nan), lw=0.5, color="tab:green", alpha=0.8,
                label="max send lag of the generator itself")
        fb = (x >= lo) & (x < hi) & (bad > 0)
        if fb.any():
            ax.scatter(x[fb], np.full(fb.sum(), 5.0), marker="|", color="red", s=60,
                       label=f"ms with failed requests ({int(bad.sum())} failed)")
        ax.axvline(inst / 1e9, color="black", ls="--", lw=0.8, label="instant")
        ax.axvspan(r["action_start_ns"] / 1e9, r["action_end_ns"] / 1e9, color="orange", alpha=0.3,
                   label="action (command start to end)")
        ax.axhline(1000, color="gray", lw=0.5, ls=":")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylabel("latency (µs)")
        ax.set_xlabel("intended send time (s)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[0].set_title(f"{title}: window max {stats['max_us']:.0f} µs, p99.9 {stats['p999_us']:.0f} µs, "
                      f"failed {stats['total_failed']}", fontsize=10)
    axes[1].set_title("the window: 0.5 s before the action to 0.5 s after it ended", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- actions -------------------------------------------------------------------

def read_counter(pid):
    """The patch's GET counter, found by its tag in the patch's rw- mapping."""
    with open(f"/proc/{pid}/maps") as maps:
        ranges = [l.split()[0] for l in maps if "suture:" in l and " rw-p " in l]
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for rg in ranges:
            lo, hi = (int(v, 16) for v in rg.split("-"))
            mem.seek(lo)
            data = mem.read(hi - lo)
            for off in range(0, len(data) - 15, 8):
                tag, calls = struct.unpack_from("<QQ", data, off)
                if tag == COUNTER_TAG:
                    return calls
    return None


def suture_json(args, *cmd):
    t = mono_ns()
    out = json.loads(run(pinned([args.suture] + list(cmd) + ["--json"], args.suture_cpu)).stdout)
    return {"pause_us": out["pause_us"], "total_us": out["total_us"], "threads": out.get("threads"),
            "attempts": out.get("attempts"), "command_ms": round((mono_ns() - t) / 1e6, 1)}


def pack_patch(args, work):
    src = os.path.join(HERE, "redis-get-counter.c")
    obj, sut = os.path.join(work, "redis-get-counter.o"), os.path.join(work, "redis-get-counter.sut")
    run(["cc", "-c", "-O2", "-fPIC", "-I", INCLUDE, src, "-o", obj])
    run([args.suture, "pack", "--target", os.path.realpath("/usr/bin/redis-server"), obj, "-o", sut])
    return sut


def redis_benchmark(args, server, sut, n, apply_at):
    """Closed loop, as fast as it goes, 8 connections, GET only; optionally a
    stop-the-world apply APPLY_AT seconds in. Returns its own CSV numbers."""
    cmd = pinned(["redis-benchmark", "-p", str(server.port), "-t", "get", "-c", str(args.connections),
                  "-n", str(n), "-r", str(server.keys), "--csv"], args.loadgen_cpu)
    t = time.time()
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    applied = None
    if apply_at is not None:
        time.sleep(apply_at)
        applied = suture_json(args, "apply", str(server.proc.pid), sut)
    out, err = bench.communicate()
    elapsed = time.time() - t
    if apply_at is not None:
        suture_json(args, "revert", str(server.proc.pid))
    row = next(csv.DictReader(io.StringIO(out)))
    return {"requests": n, "elapsed_s": round(elapsed, 2), "rps": float(row["rps"]),
            "p99_us": 1000 * float(row["p99_latency_ms"]), "max_us": 1000 * float(row["max_latency_ms"]),
            "apply": applied}


# --- report --------------------------------------------------------------------

def fmt_us(v):
    return "–" if v != v else (f"{v:.0f}" if v < 10000 else f"{v / 1000:.1f} ms")


def markdown(meta, rows, noise, cross):
    out = [f"Measured {meta['date']} on {meta['machine']}; Redis {meta['redis']} with {meta['keys']:,} keys "
           f"(RDB {meta['rdb_mb']:.0f} MB), memcached {meta['memcached']} with the same keys; "
           f"{meta['connections']} connections, {meta['rate']:.0f} requests/s open loop "
           f"(GET 80 % / SET 15 % / PING or version 5 %), {meta['duration']:.0f} s runs, instant at "
           f"{meta['at']:.0f} s; latency from the intended send time; the window runs from "
           f"{meta['window'] / 2:.1f} s before the action to {meta['window'] / 2:.1f} s after it ended "
           f"(the second around the instant for a baseline or a patch); server on CPU 0, generator on "
           f"CPU 1, suture {meta['suture_cpu']}; load average before the runs {meta['loadavg']}.", "",
           "| server | at the instant | failed (window / run) | max | p99 | p99.9 | p99.99 | > 1 ms (window) "
           "| p99.9 / baseline | suture pause | generator lag | notes |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s = r.get("stats")
        if s is None:
            out.append(f"| {r['server']} | {r['label']} | – | – | – | – | – | – | – | – | – | {r['notes']} |")
            continue
        ratio = f"{s['p999_us'] / r['baseline_p999']:.2f}×" if r.get("baseline_p999") else "–"
        pause = f"{r['suture']['pause_us'] / 1000:.2f} ms" if r.get("suture") else "–"
        out.append(f"| {r['server']} | {r['label']} | {s['window_failed']} / {s['total_failed']} | "
                   f"{fmt_us(s['max_us'])} | {fmt_us(s['p99_us'])} | {fmt_us(s['p999_us'])} | "
                   f"{fmt_us(s['p9999_us'])} | {s['window_over_1ms']} | {ratio} | {pause} | "
                   f"{fmt_us(s['window_max_send_lag_us'])} | {r['notes']} |")
    out += ["", "Latencies in µs unless marked. Percentiles and max are over the answered requests; failed "
            "ones (error reply, lost on a closed connection, dropped while refused, unanswered) are counted "
            "apart. Generator lag: the longest its own send of a request in the window came after the "
            "intended time (already included in the latencies).", ""]
    if noise:
        out.append(f"Run-to-run noise ({noise['server']} baseline twice, same window): max "
                   f"{fmt_us(noise['a']['max_us'])} vs {fmt_us(noise['b']['max_us'])}, p99.9 "
                   f"{fmt_us(noise['a']['p999_us'])} vs {fmt_us(noise['b']['p999_us'])} "
                   f"({noise['p999_diff_pct']:+.0f} %), p99.99 {fmt_us(noise['a']['p9999_us'])} vs "
                   f"{fmt_us(noise['b']['p9999_us'])}, > 1 ms {noise['a']['window_over_1ms']} vs "
                   f"{noise['b']['window_over_1ms']}.")
    if cross:
        a, b = cross["baseline"], cross["apply"]
        out.append(f"Cross-check with redis-benchmark (closed loop, GET, {meta['connections']} connections, "
                   f"as fast as it goes): without a patch {a['rps']:.0f} req/s, p99 {fmt_us(a['p99_us'])}, max "
                   f"{fmt_us(a['max_us'])}; with the same stop-the-world apply in the middle (pause "
                   f"{b['apply']['pause_us'] / 1000:.2f} ms) {b['rps']:.0f} req/s, p99 {fmt_us(b['p99_us'])}, "
                   f"max {fmt_us(b['max_us'])}. {cross['note']}")
    return "\n".join(out) + "\n"


START, END = "<!-- run.py: table start -->", "<!-- run.py: table end -->"


def write_table(path, text):
    """Replace the generated part of PATH (between the markers), keeping the prose around it."""
    body = f"{START}\n{text}{END}\n"
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if START in old and END in old:
            body = old[:old.index(START)] + body + old[old.index(END) + len(END) + 1:]
        else:
            body = old.rstrip("\n") + "\n\n" + body
    else:
        body = "# Live patching under load: open-loop latency (`bench/live/run.py`)\n\n" + body
    with open(path, "w") as f:
        f.write(body)


# --- main ----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suture", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--rate", type=float, default=20000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--at", type=float, default=5, help="the instant, seconds into the run")
    ap.add_argument("--window", type=float, default=1.0, help="seconds around the instant for the statistics")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--only", default="redis,memcached,redis-benchmark")
    ap.add_argument("--suture-cpu", type=int, help="pin suture to this CPU (default: where the scheduler puts it)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir and the per-request records")
    args = ap.parse_args()
    args.suture, args.loadgen = os.path.abspath(args.suture), os.path.abspath(args.loadgen)
    ncpu = os.cpu_count() or 1
    server_cpu, args.loadgen_cpu = (0, 1) if ncpu >= 2 else (None, None)
    only = set(args.only.split(","))
    os.makedirs(args.out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="suture-live-")
    runs, rows, noise, cross = [], [], None, None
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{ncpu} cores, {os.uname().release}", "keys": args.keys, "rate": args.rate,
            "connections": args.connections, "duration": args.duration, "at": args.at,
            "window": args.window, "suture_cpu": "unpinned" if args.suture_cpu is None else f"on CPU {args.suture_cpu}",
            "loadavg": " ".join(f"{v:.1f}" for v in os.getloadavg()),
            "redis": run(["redis-server", "--version"]).stdout.split()[2].removeprefix("v="),
            "memcached": run(["memcached", "-V"]).stdout.split()[1], "rdb_mb": 0}

    def record(server, label, r, notes, baseline=None, suture=None):
        stats = analyse(r, args.window)
        png = os.path.join(args.out_dir, r["name"] + ".png")
        plot(r, stats, png, f"{server}, {label}")
        runs.append({"name": r["name"], "server": server, "label": label, "stats": stats, "suture": suture,
                     "instant_s": r["instant_ns"] / 1e9, "action_s": [r["action_start_ns"] / 1e9,
                                                                     r["action_end_ns"] / 1e9],
                     "detail": r["detail"], "generator": r["summary"], "notes": notes,
                     "png": os.path.relpath(png, HERE)})
        rows.append({"server": server, "label": label, "stats": stats, "notes": notes, "suture": suture,
                     "baseline_p999": baseline["p999_us"] if baseline else None})
        print(f"{r['name']}: failed {stats['window_failed']}/{stats['total_failed']}, max {stats['max_us']:.0f} µs, "
              f"p99.9 {stats['p999_us']:.0f} µs, p99.99 {stats['p9999_us']:.0f} µs, >1ms {stats['window_over_1ms']}"
              + (f", pause {suture['pause_us']} µs" if suture else ""), file=sys.stderr)
        return stats

    try:
        if only & {"redis", "redis-benchmark"}:
            redis = Redis(work, args.keys, server_cpu)
            try:
                redis.start()
                meta["redis_setup"] = redis.populate()
                meta["rdb_mb"] = meta["redis_setup"]["rdb_bytes"] / 1e6
                digest = redis.digest()
                sut = pack_patch(args, work)
                if "redis" in only:
                    b1 = record("redis", "nothing (baseline 1)", load_run(args, redis, "redis-baseline-1", lambda: None, work), "")
                    b2 = record("redis", "nothing (baseline 2)", load_run(args, redis, "redis-baseline-2", lambda: None, work), "")
                    noise = {"server": "redis", "a": b1, "b": b2,
                             "p999_diff_pct": 100 * (b2["p999_us"] - b1["p999_us"]) / b1["p999_us"]}
                    applied = {}
                    r = load_run(args, redis, "redis-stw-apply",
                                 lambda: applied.update(suture_json(args, "apply", str(redis.proc.pid), sut)), work)
                    calls = read_counter(redis.proc.pid)
                    gets_after = int(((r["records"]["op"] == 0) & (r["records"]["status"] == 0) &
                                      (r["records"]["intended"] >= r["action_end_ns"])).sum())
                    same = redis.digest() == digest
                    record("redis", "`suture apply` (stop-the-world)", r,
                           f"getCommand counts its calls: {calls} counted, ≥ {gets_after} GETs sent after the "
                           f"command ended; data digest {'unchanged' if same else 'CHANGED'}", b1, applied)
                    reverted = {}
                    r = load_run(args, redis, "redis-stw-revert",
                                 lambda: reverted.update(suture_json(args, "revert", str(redis.proc.pid))), work)
                    record("redis", "`suture revert` (stop-the-world)", r,
                           f"the patch above taken back; data digest {'unchanged' if redis.digest() == digest else 'CHANGED'}",
                           b1, reverted)
                    r = load_run(args, redis, "redis-restart", redis.restart, work)
                    redis.wait_ready()
                    same = redis.digest() == digest
                    st = record("redis", "restart (SIGTERM, start, RDB reload)", r, "", b1)
                    rows[-1]["notes"] = runs[-1]["notes"] = (
                        f"failed requests span {st.get('failed_span_ms', 0)} ms (refused, then -LOADING); "
                        f"RDB saved before the run (SETs rewrite the same values); data digest after reload "
                        f"{'unchanged' if same else 'CHANGED'}")
                if "redis-benchmark" in only:
                    # Calibrate to about DURATION seconds, then run without and with an apply in the middle.
                    probe = redis_benchmark(args, redis, sut, 200_000, None)
                    n = int(probe["rps"] * args.duration)
                    cross = {"baseline": redis_benchmark(args, redis, sut, n, None),
                             "apply": redis_benchmark(args, redis, sut, n, args.duration / 2)}
                    cross["note"] = ("Closed loop, a stall delays about one request per connection, and its "
                                     "percentiles cover the whole run; compare the open-loop window above.")
            finally:
                redis.stop()
        if "memcached" in only:
            mc = Memcached(work, args.keys, server_cpu)
            try:
                mc.start()
                meta["memcached_setup"] = mc.populate()
                b = record("memcached", "nothing (baseline)", load_run(args, mc, "memcached-baseline", lambda: None, work), "")
                rows.append({"server": "memcached", "label": "`suture apply`", "stats": None,
                             "notes": "not measured: Debian's memcached is stripped (no .symtab, no request-path "
                                      "function in .dynsym); needs the source build with symbols (issue 4)"})
                items_before = mc.items()
                r = load_run(args, mc, "memcached-warm-restart", mc.restart, work)
                mc.wait_ready()
                items_after = mc.items()
                st = record("memcached", "warm restart (SIGUSR1, start with -e)", r, "", b)
                rows[-1]["notes"] = runs[-1]["notes"] = (
                    f"failed requests span {st.get('failed_span_ms', 0)} ms; items {items_before} before, "
                    f"{items_after} after the restart")
            finally:
                mc.stop()
    finally:
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    result = {"meta": meta, "runs": runs, "noise": noise and {k: v for k, v in noise.items()},
              "redis_benchmark": cross}
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    text = markdown(meta, rows, noise, cross)
    write_table(args.markdown, text)
    print(text)


if __name__ == "__main__":
    main()
