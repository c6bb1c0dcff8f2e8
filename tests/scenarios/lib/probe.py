#!/usr/bin/env python3
"""Small probes the scenario runner needs where bash is clumsy.

  probe.py wait LOG MARK REGEX TIMEOUT PID [COUNT]
      Waits for COUNT (default 1) complete lines after byte offset MARK of LOG
      that match REGEX (Python re). Prints the offset just past the last of
      them, then that line. Exit 1 on timeout, 3 if process PID died (or
      stopped) meanwhile.
  probe.py lines LOG MARK
      Prints the complete lines after byte offset MARK.
  probe.py match REGEX
      Prints the first line of stdin that matches REGEX; exit 1 if none does.
  probe.py end LOG
      Prints the offset just past the last complete line.
  probe.py snapshot PID
      Prints what a refused or failed operation must leave as it was: the
      thread ids, the mappings (but the sizes of [heap] and [stack], which move
      on their own) and a SHA-256 of every executable mapping's bytes, read
      through /proc/PID/mem, so a single changed byte of code shows.
  probe.py counting LOG
      Checks the target's own counters: in lines like "tick N ...",
      "worker 2 tick N ..." or "worker round N ...", N must go up by one per
      line for each prefix. A replacement that breaks its caller (clobbers a
      register the caller relied on, corrupts its stack) shows here even when
      the patched value looks right. Prints the first break; exit 1.
  probe.py threads-ok PID
      Exit 0 if the process exists and no thread is stopped, traced or dead;
      otherwise prints why and exits 1.
  probe.py patch-object SUT OUT
      Writes the relocatable object inside patch file SUT to OUT, so a
      scenario can look at what suture build put into it (readelf, nm).
"""
import hashlib
import os
import re
import struct
import sys
import time


def complete_lines(log, mark):
    """(end_offset, text) of each complete line after `mark`."""
    with open(log, "rb") as f:
        f.seek(mark)
        data = f.read()
    out = []
    pos = mark
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            break
        pos = mark + nl + 1
        out.append((pos, data[start:nl].decode("utf-8", "replace")))
        start = nl + 1
    return out


def thread_states(pid):
    states = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # it just exited
        states[int(tid)] = stat[stat.rindex(")") + 2]
    return states


def threads_problem(pid):
    """None if the process runs normally, else a reason."""
    try:
        states = thread_states(pid)
    except OSError:
        return f"process {pid} is gone"
    if not states:
        return f"process {pid} is gone"
    leader = states.get(pid)
    if leader in ("Z", "X") or leader is None:
        return f"process {pid} has exited (state {leader})"
    # X (EXIT_DEAD) is a thread of its own being freed as it exits, for a
    # moment; Z is one a tracer has not reaped: a thread suture left behind.
    bad = {tid: s for tid, s in states.items() if s in "TtZ" and tid != pid}
    if leader in "Tt":
        bad[pid] = leader
    if bad:
        return f"process {pid} has threads stopped or dead: " + ", ".join(
            f"{tid}={s}" for tid, s in sorted(bad.items()))
    return None


def cmd_wait(log, mark, regex, timeout, pid, count="1"):
    pattern = re.compile(regex)
    deadline = time.monotonic() + float(timeout)
    mark = int(mark)
    pid = int(pid)
    count = int(count)

    def found():
        hits = [(end, text) for end, text in complete_lines(log, mark)
                if pattern.search(text)]
        if len(hits) < count:
            return False
        print(hits[count - 1][0])
        print(hits[count - 1][1])
        return True

    while True:
        if found():
            return 0
        problem = threads_problem(pid)
        if problem:
            # one last look: the line may have been written just before the end
            if found():
                return 0
            print(problem)
            return 3
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.02)


def cmd_lines(log, mark):
    for _, text in complete_lines(log, int(mark)):
        print(text)
    return 0


def cmd_match(regex):
    pattern = re.compile(regex)
    for line in sys.stdin:
        if pattern.search(line):
            print(line.rstrip("\n"))
            return 0
    return 1


def cmd_end(log):
    lines = complete_lines(log, 0)
    print(lines[-1][0] if lines else 0)
    return 0


ARENA = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: a malloc arena heap is this big and aligned


def arena_heaps(maps):
    """Spans of glibc malloc arena heaps: anonymous mappings that exactly tile
    one ARENA-aligned ARENA-sized block. The target makes them itself (a thread's
    first malloc, e.g. when its unwinder sorts a patch's unwind tables that were
    registered and then taken back), so they say nothing about what suture left."""
    blocks = {}
    for fields in maps:
        if len(fields) > 5:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        blocks.setdefault(start // ARENA, []).append((start, end, fields[0]))
    spans = set()
    for block, parts in blocks.items():
        parts.sort()
        base = block * ARENA
        if parts[0][0] == base and parts[-1][1] == base + ARENA and all(
                a[1] == b[0] for a, b in zip(parts, parts[1:])):
            spans.update(p[2] for p in parts)
    return spans


def cmd_snapshot(pid):
    pid = int(pid)
    print("threads:", " ".join(str(t) for t in sorted(thread_states(pid))))
    with open(f"/proc/{pid}/maps") as f:
        maps = [line.split() for line in f]
    arenas = arena_heaps(maps)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for fields in maps:
            span, perms, offset = fields[0], fields[1], fields[2]
            name = fields[5] if len(fields) > 5 else ""
            if name in ("[heap]", "[stack]"):
                print(perms, name)
                continue
            if span in arenas:
                continue
            line = f"{span} {perms} {offset} {name}"
            if "x" in perms and name != "[vsyscall]":
                start, end = (int(x, 16) for x in span.split("-"))
                mem.seek(start)
                line += " sha256=" + hashlib.sha256(mem.read(end - start)).hexdigest()
            print(line)
    return 0


COUNTER = re.compile(r"^(.*?)\b(tick|round) (\d+)\b")


def cmd_counting(log):
    last = {}
    for number, (_, text) in enumerate(complete_lines(log, 0), 1):
        m = COUNTER.match(text)
        if not m:
            continue
        key, value = m[1] + m[2], int(m[3])
        if key in last and value != last[key] + 1:
            print(f"line {number}: '{text}' after {m[2]} {last[key]}")
            return 1
        last[key] = value
    return 0


def cmd_threads_ok(pid):
    problem = threads_problem(int(pid))
    if problem:
        print(problem)
        return 1
    return 0


def cmd_patch_object(sut, out):
    # src/patchfile's header: "SUTUREPT", u32 version, u32 metadata size,
    # u64 object size, u64 checksum; then the metadata, then the object.
    with open(sut, "rb") as f:
        data = f.read()
    if data[:8] != b"SUTUREPT" or len(data) < 32:
        print(f"{sut}: not a suture patch")
        return 1
    _, meta_size, object_size, _ = struct.unpack_from("<IIQQ", data, 8)
    start = 32 + meta_size
    obj = data[start:start + object_size]
    if len(obj) != object_size or obj[:4] != b"\x7fELF":
        print(f"{sut}: no ELF object where the header says")
        return 1
    with open(out, "wb") as f:
        f.write(obj)
    return 0


COMMANDS = {
    "wait": cmd_wait,
    "lines": cmd_lines,
    "match": cmd_match,
    "end": cmd_end,
    "snapshot": cmd_snapshot,
    "counting": cmd_counting,
    "threads-ok": cmd_threads_ok,
    "patch-object": cmd_patch_object,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
