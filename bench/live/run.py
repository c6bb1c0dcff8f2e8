#!/usr/bin/python3
"""Open-loop latency of a busy server around one instant: nothing (baseline), a live
patch or its revert (`suture apply` / `suture revert`, stop-the-world and
zero-suspend), or a restart -- for Redis and memcached built from source.

Each scenario starts the load generator (suture-loadgen: constant rate, latency of
every request measured from its intended send time, so a stall is charged to every
request scheduled during it), waits until AT seconds into the run, does its action,
and lets the load run to DURATION. Reported per scenario, from WINDOW/2 before the
action to WINDOW/2 after it: failed requests (error replies, lost on a closed
connection, dropped while the server refused connections, unanswered), max / p99 /
p99.9 / p99.99 latency of the answered requests, requests slower than 1 ms, and the
longest time suture held any thread; plus a PNG of per-millisecond max latency. Also:
the baseline run twice per server (run-to-run noise) and a closed-loop
redis-benchmark run with the same apply, to show what it misses.

    cmake --build build --target suture suture-loadgen
    bench/live/run.py --suture build/src/cli/suture --loadgen build/bench/live/suture-loadgen

The servers and patches come from build-servers.sh (run first, cached in --cache):
Redis just before Debian's CVE-2025-32023 fix, patched with the fix; memcached
patched with memcached-version.diff (its `version` reply says so, which the load
generator marks request by request). CPU 0 runs the server, CPU 1 the load generator
and, by default, suture (--suture-cpu; --pinning also measures suture on the server's
CPU for comparison). Needs Debian's redis-tools, python3-numpy, python3-matplotlib.
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
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RECORD = np.dtype([("intended", "<i8"), ("latency", "<i8"), ("status", "u1"), ("op", "u1"),
                   ("conn", "<u2"), ("send_lag_us", "<u4")])
STATUS = ["ok", "error", "lost", "dropped", "unanswered"]
OP_MASK, MARKED = 0x7F, 0x80  # load-generator.cc: Op in the low bits, kMarked
OP_GET, OP_PING = 0, 2
MEMCACHED_MARK = "(live-patched)"  # what memcached-version.diff adds to the version reply
# --rt: SCHED_FIFO priorities. Server and load above suture, so that suture's own
# work never delays a request the server could serve (other than by holding it),
# and all three above the machine's ordinary tasks (a shared machine's builds).
RT_LOAD, RT_SUTURE = 2, 1


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cmd, cpu, rt=None):
    """CMD on CPU (None: anywhere), and with --rt under SCHED_FIFO priority RT."""
    prefix = (["taskset", "-c", str(cpu)] if cpu is not None else []) + (["chrt", "-f", str(rt)] if rt else [])
    return prefix + cmd


# --- servers -------------------------------------------------------------------

class Redis:
    """redis-server built from source (build-servers.sh), with an RDB of KEYS keys in
    WORK, reloaded on restart."""
    protocol = "redis"
    safe_point = "processCommand"  # every command, once parsed, starts here
    mark = None

    def __init__(self, cache, work, keys, cpu, rt):
        self.binary = os.path.join(cache, "redis", "tree", "src", "redis-server")
        self.patch = os.path.join(cache, "redis", "patch")
        self.work, self.keys, self.cpu, self.rt, self.port = work, keys, cpu, rt, free_port()
        self.proc = None
        self.log = open(os.path.join(work, "redis.log"), "a")

    def version(self):
        return run([self.binary, "--version"]).stdout.split()[2].removeprefix("v=")

    def cli(self, *args, input=None):
        return run(["redis-cli", "-p", str(self.port)] + list(args), input=input).stdout.strip()

    def spawn(self):
        return subprocess.Popen(pinned(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.work, "--dbfilename", "dump.rdb",
             "--enable-debug-command", "local"], self.cpu, self.rt), stdout=self.log, stderr=self.log)

    def start(self):
        self.proc = self.spawn()
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

    def fingerprint(self):
        return self.cli("debug", "digest")

    def fix_active(self):
        """The fix's own test case (Debian's 0006-CVE-2025-32023.patch, hyperloglog.tcl:
        "Corrupted sparse HyperLogLogs doesn't cause overflow and out-of-bounds with
        XZERO opcode"): a sparse HLL whose XZERO runs add up past 2^32 registers. The
        fixed server answers INVALIDOBJ; the unfixed one writes out of bounds, so this
        is asked only when the fix should be in."""
        runlen = 16384 - 1
        chunk = bytes([0b01000000 | (runlen >> 8), runlen & 0xFF])
        payload = b"HYLL" + bytes([1] + [0] * 11) + chunk * (131072 + 1000) + bytes([0xFF])
        subprocess.run(["redis-cli", "-p", str(self.port), "-x", "set", "suture-bench-corrupt"], input=payload,
                       check=True, capture_output=True)
        answer = subprocess.run(["redis-cli", "-p", str(self.port), "pfcount", "suture-bench-corrupt",
                                 "suture-bench-corrupt"], capture_output=True, text=True).stdout.strip()
        self.cli("del", "suture-bench-corrupt")
        return "INVALIDOBJ" in answer, answer

    def restart(self):
        """What a user does today: SIGTERM, wait for the exit, start again (RDB reload)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        exited = mono_ns()
        self.proc = self.spawn()
        self.wait_ready()
        return {"exited_ns": exited, "ready_ns": mono_ns()}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Memcached:
    """memcached built from source (build-servers.sh), its item memory in a file on
    tmpfs (-e), so that a SIGUSR1 shutdown followed by a start with the same file is
    a warm restart."""
    protocol = "memcache"
    # The text protocol's dispatcher: a worker thread's event loop
    # (drive_machine -> try_read_command_ascii) calls it once per request line.
    safe_point = "process_command_ascii"
    mark = MEMCACHED_MARK

    def __init__(self, cache, work, keys, cpu, rt):
        self.binary = os.path.join(cache, "memcached", "tree", "memcached")
        self.patch = os.path.join(cache, "memcached", "patch")
        self.keys, self.cpu, self.rt, self.port = keys, cpu, rt, free_port()
        self.memfile = f"/dev/shm/suture-bench-memcached-{os.getpid()}"
        self.proc = None
        self.log = open(os.path.join(work, "memcached.log"), "a")

    def version(self):
        return run([self.binary, "-V"]).stdout.split()[1]

    def cmd(self):
        return pinned([self.binary, "-p", str(self.port), "-l", "127.0.0.1", "-U", "0", "-u", "root",
                       "-m", "512", "-t", "4", "-c", "1024", "-e", self.memfile], self.cpu, self.rt)

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

    def fingerprint(self):
        """Item count and a sample of values: the load's SETs rewrite the same values."""
        sample = self.request(b"get key:0 key:1 key:123456 key:999999\r\n", b"END\r\n")
        return f"{self.items()} items, sample crc {zlib.crc32(sample):08x}"

    def fix_active(self):
        reply = self.request(b"version\r\n", b"\r\n").decode().strip()
        return MEMCACHED_MARK in reply, reply

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
    if server.mark:
        cmd += ["--mark", server.mark]
    gen = subprocess.Popen(pinned(cmd, None, args.rt and RT_LOAD), stdout=subprocess.PIPE, text=True)
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


def steady_slices(rec, duration_s, width_s):
    """The run cut into WIDTH-long slices, leaving out the first and the last second
    (connections starting, the generator ending): (lo, hi) in ns from its start."""
    out, start = [], 1.0
    while start + width_s <= duration_s - 1.0 + 1e-9:
        out.append((int(start * 1e9), int((start + width_s) * 1e9)))
        start += width_s
    return out


def ok_latency_us(rec, lo, hi):
    sl = rec[(rec["intended"] >= lo) & (rec["intended"] < hi)]
    return sl[sl["status"] == 0]["latency"] / 1000.0


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
    # The p99.9 of each window-long slice of the run (first and last second left
    # out): for a baseline, what a window's p99.9 is worth on its own. One stall of
    # a few ms lands in some slices and not others and sets their p99.9 (at 20,000
    # requests/s, 20 requests are a second's 0.1 %): the median slice is the
    # baseline's typical second.
    slices = steady_slices(rec, r["summary"]["duration_s"], window_s)
    if slices:
        res["slices_p999_us"] = [pct(ok_latency_us(rec, lo, hi), 99.9) for lo, hi in slices]
        res["typical_p999_us"] = float(np.median(res["slices_p999_us"]))
    if len(failed):
        res["failed_span_ms"] = round((failed["intended"].max() - failed["intended"].min()) / 1e6, 1)
    res["total_failed"] = sum(res["failed"].values())
    return res


def switch_stats(r, to_marked):
    """Which code answered the probe requests (memcached's `version`, whose reply the
    patch marks): how many on the old and on the new code, when the first on the new
    and the last on the old code were sent relative to the action's start, and how
    many connections got an old reply after a new one (a request that ran on old
    code after its connection's thread had switched). TO_MARKED: the action switches
    to the marked reply (apply) or away from it (revert)."""
    rec = r["records"]
    probes = rec[((rec["op"] & OP_MASK) == OP_PING) & (rec["status"] == 0)]
    marked = (probes["op"] & MARKED) != 0
    if not marked.any():
        return {"marked": 0}
    new = marked if to_marked else ~marked
    out = {"marked": int(marked.sum()), "on_new": int(new.sum()), "on_old": int((~new).sum()),
           "back_to_old_connections": 0}
    start = r["action_start_ns"]
    if new.any():
        out["first_new_ms"] = round((probes["intended"][new].min() - start) / 1e6, 3)
    if (~new).any():
        out["last_old_ms"] = round((probes["intended"][~new].max() - start) / 1e6, 3)
    for c in np.unique(probes["conn"]):
        sel = probes["conn"] == c
        order = np.argsort(probes["intended"][sel], kind="stable")
        if (np.diff(new[sel][order].astype(np.int8)) < 0).any():
            out["back_to_old_connections"] += 1
    return out


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

def suture_modes(suture):
    """The consistency modes this suture's apply offers (its --help lists --mode's
    choices when it has the option; the first suture had stop-the-world only)."""
    text = run([suture, "apply", "--help"]).stdout
    if "--mode" not in text:
        return {"stop-the-world"}
    return {m for m in ("stop-the-world", "zero-suspend") if m in text}


def takes_safe_point(suture, verb):
    return "--safe-point" in run([suture, verb, "--help"]).stdout


def longest_hold_us(out):
    """The longest time suture held any one thread, from its --json report.
    Stop-the-world holds every thread for the whole pause, so there it is pause_us;
    zero-suspend holds threads one at a time and reports the longest of those
    (zero_suspend.longest_hold_us, src/cli/live-report.cc)."""
    holds = []
    live = out.get("zero_suspend")
    if isinstance(live, dict) and isinstance(live.get("longest_hold_us"), (int, float)):
        holds.append((live["longest_hold_us"], "zero_suspend.longest_hold_us"))
    # with --safe-point: two live switches (to the dispatchers, then to the new code)
    for step in ("first_switch", "second_switch"):
        h = (out.get("transition") or {}).get(step, {}).get("longest_hold_us")
        if isinstance(h, (int, float)):
            holds.append((h, f"transition.{step}.longest_hold_us"))
    if holds:
        return max(holds)
    return out.get("pause_us"), "pause_us"


def live_note(out):
    """Zero-suspend's own account: threads examined with and without a hold, the
    switch's length, calls steered mid-switch, frames left running old code."""
    live = out.get("zero_suspend")
    if not isinstance(live, dict):
        return ""
    steered = sum(live.get("steered_calls", {}).values())
    note = (f"{live.get('threads')} threads: {live.get('threads_seen_without_hold')} seen blocked without a hold, "
            f"{live.get('threads_seen_at_trap', 0)} at a trap of their own, "
            f"{live.get('threads_held')} held alone; switch {live.get('switch_us', 0) / 1000:.1f} ms, "
            f"{live.get('syncs')} core syncs, {steered} calls steered mid-switch")
    if live.get("waited_clear_us"):
        note += f", waited {live['waited_clear_us'] / 1000:.1f} ms for the old code to clear"
    if live.get("old_frames"):
        note += "; still in old code: " + ", ".join(f"{f['thread']} in {f['function']}" for f in live["old_frames"])
    t = out.get("transition")
    if isinstance(t, dict):
        threads = t.get("threads", [])
        entered = sum(1 for x in threads if x.get("how") == "entered the safe point")
        last = max((x.get("after_us", 0) for x in threads), default=0)
        old = sum((t.get("old_calls") or {}).values())
        note += (f"; safe point {t.get('safe_point')}: {len(threads)} threads switched, {entered} on entering it, "
                 f"{len(threads) - entered} idle between requests, the last after {last / 1000:.1f} ms; transition "
                 f"{t.get('length_us', 0) / 1000:.1f} ms; {old} calls ran the replaced version meanwhile")
    return note


def suture_json(args, verb, server, mode):
    """`suture VERB PID [PATCH] --json` in MODE (None: suture's default), pinned to
    args.suture_cpu. Keeps suture's whole report."""
    cmd = [args.suture, verb]
    if mode:
        cmd += ["--mode", mode]
        if mode == "zero-suspend" and args.safe_point and takes_safe_point(args.suture, verb):
            cmd += ["--safe-point", server.safe_point]
    cmd += [str(server.proc.pid)] + ([server.patch] if verb == "apply" else []) + ["--json"]
    t = mono_ns()
    proc = subprocess.run(pinned(cmd, args.suture_cpu, args.rt and RT_SUTURE), capture_output=True, text=True)
    elapsed_ms = round((mono_ns() - t) / 1e6, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    out = json.loads(proc.stdout)
    hold, source = longest_hold_us(out)
    return {"command": cmd[1:], "pause_us": out.get("pause_us"), "total_us": out.get("total_us"),
            "longest_hold_us": hold, "hold_from": source, "command_ms": elapsed_ms,
            "report": {k: v for k, v in out.items() if k != "applied"},
            "ids": [a.get("id") for a in out.get("applied", [])]}


def redis_benchmark(args, server, n, apply, mode=None):
    """Closed loop, as fast as it goes, 8 connections, GET only; with APPLY, an apply
    in MODE (None: suture's default) half-way through, reverted after. Returns its
    own CSV numbers."""
    cmd = pinned(["redis-benchmark", "-p", str(server.port), "-t", "get", "-c", str(args.connections),
                  "-n", str(n), "-r", str(server.keys), "--csv"], args.loadgen_cpu, args.rt and RT_LOAD)
    t = time.time()
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    applied = None
    if apply:
        time.sleep(args.duration / 2)
        applied = suture_json(args, "apply", server, mode)
    out, err = bench.communicate()
    elapsed = time.time() - t
    if apply:
        suture_json(args, "revert", server, mode)
    row = next(csv.DictReader(io.StringIO(out)))
    return {"requests": n, "elapsed_s": round(elapsed, 2), "rps": float(row["rps"]),
            "p99_us": 1000 * float(row["p99_latency_ms"]), "max_us": 1000 * float(row["max_latency_ms"]),
            "apply": applied, "mode": mode}


# --- report --------------------------------------------------------------------

def fmt_us(v):
    return "–" if v is None or v != v else (f"{v:.0f}" if v < 10000 else f"{v / 1000:.1f} ms")


def fmt_hold(us):
    return "–" if us is None else (f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms")


def switch_note(s):
    if not s or not s.get("marked"):
        return ""
    note = f"version replies: {s['on_old']} from the old code, {s['on_new']} from the new"
    if "first_new_ms" in s:
        note += f"; the first new one sent {s['first_new_ms']:+.1f} ms"
    if "last_old_ms" in s:
        note += f", the last old one {s['last_old_ms']:+.1f} ms"
    return note + f" from the command's start; connections back on old code after new: {s['back_to_old_connections']}"


def slice_spread(values):
    v = sorted(values)
    return (f"{fmt_us(v[0])} to {fmt_us(v[-1])}, median {fmt_us(float(np.median(v)))} ({len(v)} slices)"
            if v else "–")


def markdown(meta, rows, noise, cross, targets):
    out = [f"Measured {meta['date']} on {meta['machine']}; Redis {meta['redis']} and memcached "
           f"{meta['memcached']} built from Debian's sources with symbols (`build-servers.sh`), each holding "
           f"{meta['keys']:,} keys (Redis RDB {meta['rdb_mb']:.0f} MB); {meta['connections']} connections, "
           f"{meta['rate']:.0f} requests/s open loop (GET 80 % / SET 15 % / PING or version 5 %), "
           f"{meta['duration']:.0f} s runs, instant at {meta['at']:.0f} s; latency from the intended send "
           f"time; the window runs from {meta['window'] / 2:.1f} s before the action to "
           f"{meta['window'] / 2:.1f} s after it ended; server on CPU 0, generator on CPU 1, suture "
           f"as the column says; scheduling {meta['scheduling']}; load average before the runs {meta['loadavg']}.", "",
           "| server | at the instant | suture on | failed (window / run) | max | p99 | p99.9 | p99.99 "
           "| > 1 ms | p99.9 / baselines' typical | mean (Δ) | longest hold | generator lag | notes |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s = r.get("stats")
        if s is None:
            out.append(f"| {r['server']} | {r['label']} | – | – | – | – | – | – | – | – | – | – | – | {r['notes']} |")
            continue
        base = r.get("baselines") or []
        ratio = " / ".join(f"{s['p999_us'] / b['typical_p999_us']:.2f}×" for b in base) if base else "–"
        mean = f"{s['mean_us']:.0f}"
        if base:
            mean += f" ({s['mean_us'] - sum(b['mean_us'] for b in base) / len(base):+.0f})"
        hold = fmt_hold(r["suture"]["longest_hold_us"]) if r.get("suture") else "–"
        out.append(f"| {r['server']} | {r['label']} | {r.get('suture_on') or '–'} | {s['window_failed']} / "
                   f"{s['total_failed']} | {fmt_us(s['max_us'])} | {fmt_us(s['p99_us'])} | {fmt_us(s['p999_us'])} | "
                   f"{fmt_us(s['p9999_us'])} | {s['window_over_1ms']} | {ratio} | {mean} | {hold} | "
                   f"{fmt_us(s['window_max_send_lag_us'])} | {r['notes']} |")
    out += ["", "Latencies in µs unless marked. Percentiles, max and mean are over the answered requests in "
            "the window; failed ones (error reply, lost on a closed connection, dropped while refused, "
            "unanswered) are counted apart. p99.9 / baselines' typical: the window's p99.9 against the "
            "median p99.9 of the window-long slices of each baseline run of the same server (its first and "
            "last second left out). "
            "Mean (Δ): the window's mean latency and its difference from the baselines' mean. Longest hold: "
            "the longest time suture held any one thread (stop-the-world: the pause, every thread held). "
            "Generator lag: the longest its own send of a request in the window came after the intended time "
            "(already included in the latencies).", ""]
    for n in noise:
        a, b = n["a"], n["b"]
        out.append(f"Run-to-run noise ({n['server']}, baseline twice, same window): max {fmt_us(a['max_us'])} "
                   f"vs {fmt_us(b['max_us'])}, p99 {fmt_us(a['p99_us'])} vs {fmt_us(b['p99_us'])}, p99.9 "
                   f"{fmt_us(a['p999_us'])} vs {fmt_us(b['p999_us'])} ({n['p999_diff_pct']:+.0f} %), p99.99 "
                   f"{fmt_us(a['p9999_us'])} vs {fmt_us(b['p9999_us'])}, > 1 ms {a['window_over_1ms']} vs "
                   f"{b['window_over_1ms']}, mean {a['mean_us']:.0f} vs {b['mean_us']:.0f}; p99.9 of each "
                   f"{meta['window']:g} s slice: {slice_spread(a.get('slices_p999_us', []))} and "
                   f"{slice_spread(b.get('slices_p999_us', []))}.")
    if cross:
        a, b = cross["baseline"], cross["apply"]
        out.append(f"Cross-check with redis-benchmark (closed loop, GET, {meta['connections']} connections, "
                   f"as fast as it goes): without a patch {a['rps']:.0f} req/s, p99 {fmt_us(a['p99_us'])}, max "
                   f"{fmt_us(a['max_us'])}; with an apply ({b['mode'] or 'stop-the-world'}, longest hold "
                   f"{fmt_hold(b['apply']['longest_hold_us'])}) in the middle {b['rps']:.0f} req/s, p99 "
                   f"{fmt_us(b['p99_us'])}, max {fmt_us(b['max_us'])}. {cross['note']}")
    if targets:
        out += ["", "Targets (issue 4):"] + [f"- {t}" for t in targets]
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
    with open(path, "w") as f:
        f.write(body)


# --- main ----------------------------------------------------------------------

def target_lines(server, rows, zs_available, window_s):
    """The issue's targets for SERVER, each as a number from the rows."""
    mine = [r for r in rows if r["server"] == server and r.get("stats")]
    sut = [r for r in mine if r.get("suture")]
    lines = []
    if sut:
        failed = sum(r["stats"]["total_failed"] for r in sut)
        lines.append(f"{server}: failed requests in the {len(sut)} suture runs: {failed} (target 0)")
    zs = [r for r in sut if r.get("mode") == "zero-suspend"]
    if zs and not any("--safe-point" in r["suture"]["command"] for r in zs):
        lines.append(f"{server}: zero-suspend ran without --safe-point {Redis.safe_point if server == 'redis' else Memcached.safe_point}: "
                     "this suture does not offer it yet")
    if not zs:
        lines.append(f"{server}: zero-suspend: not measured ({'no zero-suspend row was run' if zs_available else 'this suture has no --mode zero-suspend'})")
        return lines
    for r in zs:
        base = r.get("baselines") or []
        p999 = r["stats"]["p999_us"]
        ratios = [p999 / b["typical_p999_us"] for b in base]
        slices = [v for b in base for v in b.get("slices_p999_us", [])]
        rank = (f"; its p99.9 ({fmt_us(p999)} µs) is above that of {sum(v < p999 for v in slices)} of the "
                f"baselines' {len(slices)} slices of {window_s:g} s" if slices else "")
        lines.append(f"{server}, {r['label']} (suture on {r['suture_on']}): longest hold "
                     f"{fmt_hold(r['suture']['longest_hold_us'])} (target ≤ 100 µs: "
                     f"{'met' if (r['suture']['longest_hold_us'] or 0) <= 100 else 'not met'}); p99.9 "
                     + " / ".join(f"{x:.2f}×" for x in ratios) + " of the baselines' typical second (target ≤ 1.5×: "
                     + ("met" if ratios and max(ratios) <= 1.5 else "met against one baseline only"
                        if ratios and min(ratios) <= 1.5 else "not met") + ")" + rank)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suture", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "suture-bench-live"),
                    help="where build-servers.sh keeps the source trees and patches")
    ap.add_argument("--rate", type=float, default=20000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--at", type=float, default=5, help="the instant, seconds into the run")
    ap.add_argument("--window", type=float, default=1.0, help="seconds around the action for the statistics")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--only", default="redis,memcached,redis-benchmark")
    ap.add_argument("--modes", default="stop-the-world,zero-suspend",
                    help="the suture modes to measure (those this suture lacks get a 'not measured' row)")
    ap.add_argument("--no-safe-point", dest="safe_point", action="store_false",
                    help="zero-suspend without --safe-point")
    ap.add_argument("--suture-cpu", default="1",
                    help="CPU for suture's own work: a number, or 'none' for where the scheduler puts it "
                         "(default 1, the generator's, so not the server's)")
    ap.add_argument("--rt", action="store_true",
                    help="run server and generator under SCHED_FIFO 2 and suture under SCHED_FIFO 1, above "
                         "everything else on the machine (an approximation of dedicated cores)")
    ap.add_argument("--pinning", action="store_true",
                    help="also run each apply with suture on the server's CPU, to measure what pinning buys")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--markdown", default=os.path.join(os.path.dirname(HERE), "README.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir and the per-request records")
    args = ap.parse_args()
    args.suture, args.loadgen = os.path.abspath(args.suture), os.path.abspath(args.loadgen)
    args.suture_cpu = None if args.suture_cpu == "none" else int(args.suture_cpu)
    ncpu = os.cpu_count() or 1
    server_cpu, args.loadgen_cpu = (0, 1) if ncpu >= 2 else (None, None)
    only = set(args.only.split(","))
    available = suture_modes(args.suture)
    has_mode_option = "zero-suspend" in available  # the option came with the second mode
    wanted = [m for m in args.modes.split(",") if m]
    subprocess.run([os.path.join(HERE, "build-servers.sh"), args.suture, args.cache], check=True)
    os.makedirs(args.out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="suture-live-")
    runs, rows, noise, cross = [], [], [], None
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{ncpu} cores, {os.uname().release}", "keys": args.keys, "rate": args.rate,
            "connections": args.connections, "duration": args.duration, "at": args.at,
            "window": args.window, "loadavg": " ".join(f"{v:.1f}" for v in os.getloadavg()),
            "suture_modes": sorted(available), "rdb_mb": 0, "cache": args.cache,
            "scheduling": f"SCHED_FIFO (server and generator {RT_LOAD}, suture {RT_SUTURE})" if args.rt
            else "default (SCHED_OTHER, nice 0)"}

    def cpu_name(cpu):
        return "unpinned" if cpu is None else f"CPU {cpu}" + (" (server's)" if cpu == server_cpu else "")

    def record(server, label, r, notes, baselines=None, suture=None, mode=None, suture_on=None):
        stats = analyse(r, args.window)
        png = os.path.join(args.out_dir, r["name"] + ".png")
        plot(r, stats, png, f"{server}, {label}")
        entry = {"name": r["name"], "server": server, "label": label, "stats": stats, "suture": suture,
                 "mode": mode, "suture_on": suture_on, "instant_s": r["instant_ns"] / 1e9,
                 "action_s": [r["action_start_ns"] / 1e9, r["action_end_ns"] / 1e9], "detail": r["detail"],
                 "generator": r["summary"], "notes": notes, "png": os.path.relpath(png, HERE)}
        runs.append(entry)
        rows.append({**entry, "baselines": baselines})
        print(f"{r['name']}: failed {stats['window_failed']}/{stats['total_failed']}, max {stats['max_us']:.0f} µs, "
              f"p99.9 {stats['p999_us']:.0f} µs, p99.99 {stats['p9999_us']:.0f} µs, >1ms {stats['window_over_1ms']}"
              + (f", longest hold {suture['longest_hold_us']} µs" if suture else ""), file=sys.stderr)
        return stats

    def set_notes(text):
        rows[-1]["notes"] = runs[-1]["notes"] = text

    def patch_rows(server, baselines, tag):
        """Apply then revert in each wanted mode, each under load, checking after each
        that the fix is in (apply) and the data unchanged."""
        before = server.fingerprint()
        placements = [args.suture_cpu] + ([server_cpu] if args.pinning and server_cpu != args.suture_cpu else [])
        for mode in wanted:
            if mode not in available:
                rows.append({"server": tag, "label": f"`suture apply` ({mode})", "stats": None,
                             "notes": f"not measured: this suture has no --mode {mode}"})
                continue
            flag = mode if has_mode_option else None
            saved_cpu = args.suture_cpu
            for cpu in placements:
                args.suture_cpu = cpu
                where = "" if cpu == placements[0] else f"-suture-cpu{cpu}"
                short = {"stop-the-world": "stw", "zero-suspend": "zs"}[mode]
                for verb in ("apply", "revert"):
                    done = {}
                    r = load_run(args, server, f"{tag}-{short}-{verb}{where}",
                                 lambda: done.update(suture_json(args, verb, server, flag)), work)
                    label = f"`suture {verb}` ({mode}" + (f", --safe-point {server.safe_point}" if
                                                         "--safe-point" in done["command"] else "") + ")"
                    if verb == "apply":
                        active, answer = server.fix_active()
                        check = f"fix in afterwards: {'yes' if active else 'NO'} ({answer})"
                    else:
                        check = "patch taken back"
                    same = server.fingerprint() == before
                    record(tag, label, r, "", baselines, done, mode, cpu_name(cpu))
                    switch = switch_stats(r, verb == "apply")
                    rows[-1]["switch"] = runs[-1]["switch"] = switch
                    set_notes("; ".join(x for x in (f"command {done['command_ms']:.0f} ms", live_note(done["report"]),
                                                    check, switch_note(switch),
                                                    f"data {'unchanged' if same else 'CHANGED'}") if x))
            args.suture_cpu = saved_cpu

    def baseline(server, tag, n):
        st = record(tag, f"nothing (baseline {n})", load_run(args, server, f"{tag}-baseline-{n}", lambda: None, work), "")
        return st

    def add_noise(tag, b1, b2):
        noise.append({"server": tag, "a": b1, "b": b2,
                      "p999_diff_pct": 100 * (b2["p999_us"] - b1["p999_us"]) / b1["p999_us"]})

    try:
        if only & {"redis", "redis-benchmark"}:
            redis = Redis(args.cache, work, args.keys, server_cpu, args.rt and RT_LOAD)
            meta["redis"] = redis.version()
            try:
                redis.start()
                meta["redis_setup"] = redis.populate()
                meta["rdb_mb"] = meta["redis_setup"]["rdb_bytes"] / 1e6
                if "redis" in only:
                    b1 = baseline(redis, "redis", 1)
                    # the second baseline after the patch runs: both ends of the series
                    rows_at = len(rows)
                    patch_rows(redis, [b1], "redis")
                    b2 = baseline(redis, "redis", 2)
                    for r in rows[rows_at:]:
                        if r.get("baselines"):
                            r["baselines"] = [b1, b2]
                    add_noise("redis", b1, b2)
                    digest = redis.fingerprint()
                    r = load_run(args, redis, "redis-restart", redis.restart, work)
                    redis.wait_ready()
                    same = redis.fingerprint() == digest
                    st = record("redis", "restart (SIGTERM, start, RDB reload)", r, "", [b1, b2])
                    set_notes(f"failed requests span {st.get('failed_span_ms', 0)} ms (refused, then -LOADING); "
                              f"RDB saved before the runs (SETs rewrite the same values); data digest after "
                              f"reload {'unchanged' if same else 'CHANGED'}")
                if "redis-benchmark" in only:
                    # Calibrate to about DURATION seconds, then run without and with an apply in the middle.
                    mode = "zero-suspend" if "zero-suspend" in available else None
                    probe = redis_benchmark(args, redis, 200_000, False)
                    n = int(probe["rps"] * args.duration)
                    cross = {"baseline": redis_benchmark(args, redis, n, False),
                             "apply": redis_benchmark(args, redis, n, True, mode)}
                    cross["note"] = ("Closed loop, a stall delays about one request per connection, and its "
                                     "percentiles cover the whole run; compare the open-loop window above.")
            finally:
                redis.stop()
        if "memcached" in only:
            mc = Memcached(args.cache, work, args.keys, server_cpu, args.rt and RT_LOAD)
            meta["memcached"] = mc.version()
            try:
                mc.start()
                meta["memcached_setup"] = mc.populate()
                b1 = baseline(mc, "memcached", 1)
                rows_at = len(rows)
                patch_rows(mc, [b1], "memcached")
                b2 = baseline(mc, "memcached", 2)
                for r in rows[rows_at:]:
                    if r.get("baselines"):
                        r["baselines"] = [b1, b2]
                add_noise("memcached", b1, b2)
                items_before = mc.items()
                r = load_run(args, mc, "memcached-warm-restart", mc.restart, work)
                mc.wait_ready()
                items_after = mc.items()
                st = record("memcached", "warm restart (SIGUSR1, start with -e)", r, "", [b1, b2])
                set_notes(f"failed requests span {st.get('failed_span_ms', 0)} ms; items {items_before} before, "
                          f"{items_after} after the restart")
            finally:
                mc.stop()
    finally:
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    meta.setdefault("redis", "–")
    meta.setdefault("memcached", "–")
    targets = [t for s in ("redis", "memcached") if s in only for t in target_lines(s, rows, "zero-suspend" in available, args.window)]
    result = {"meta": meta, "runs": runs, "noise": noise, "redis_benchmark": cross, "targets": targets}
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    text = markdown(meta, rows, noise, cross, targets)
    write_table(args.markdown, text)
    print(text)


if __name__ == "__main__":
    main()
