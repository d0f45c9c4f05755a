#!/usr/bin/env python3
"""Soak test of `ember serve` (not part of CI): many concurrent streaming clients for
minutes, then checks that nothing failed and that the server's memory, threads and file
descriptors come back to where they were.

    python3 tests/server/soak.py                       # 64 clients x 300 s, -np 4, default model
    python3 tests/server/soak.py --clients 8 --duration 30 --bin build-asan/ember

It starts the server itself on 127.0.0.1 (--port 0), warms every slot up (so the KV
caches are touched before the first sample), samples RSS, threads and open fds from
/proc/PID every --every seconds while `--clients` threads each stream chat completions
back to back until --duration has passed, lets the server idle, samples again and stops
it with SIGTERM. Prints one line per sample and a summary; exits 1 if any request failed,
if the idle thread or fd count differs from the start, if RSS grew by more than --rss-pct
percent, or if the server did not exit with status 0.
"""
import argparse
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

TOPICS = ["the sea", "a lighthouse", "bread", "winter", "trains", "owls", "chess", "rain", "maps",
          "a clock", "bees", "coffee", "rockets", "a library", "snow", "music"]


def proc_sample(pid):
    """(RSS in MiB, threads, open fds) of process pid."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))


def start_server(args):
    cmd = [args.bin, "serve", "--host", "127.0.0.1", "--port", "0", "-np", str(args.np)] + args.server_args
    env = {k: v for k, v in os.environ.items() if k != "EMBER_API_KEY"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    port, ready = None, threading.Event()
    counts = {"log_lines": 0}

    def pump():  # keeps reading stderr (one access-log line per request)
        nonlocal port
        for line in proc.stderr:
            counts["log_lines"] += 1
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            if "ready:" in line:
                ready.set()
            if "ERROR" in line or "runtime error" in line:
                sys.stderr.write(line)
        ready.set()
    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(300) or port is None or proc.poll() is not None:
        proc.kill()
        sys.exit("server did not start")
    return proc, port, counts


def stream_once(port, rng, max_tokens, timeout):
    """One streamed chat completion. Returns (ok, ttft seconds or None, error text)."""
    body = json.dumps({
        "messages": [{"role": "user", "content": f"Write a few sentences about {rng.choice(TOPICS)}."}],
        "max_tokens": max_tokens, "temperature": 0.8, "seed": rng.randrange(1 << 30), "stream": True,
    })
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return False, None, f"status {r.status}: {r.read()[:200]!r}"
        ttft, done, buf = None, False, b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    return False, ttft, f"bad event {event[:80]!r}"
                data = event[6:]
                if data == b"[DONE]":
                    done = True
                    continue
                obj = json.loads(data)
                if "error" in obj:
                    return False, ttft, f"error event {obj['error']}"
                if ttft is None and obj["choices"] and obj["choices"][0]["delta"].get("content"):
                    ttft = time.monotonic() - t0
        return (True, ttft, "") if done else (False, ttft, "stream ended without [DONE]")
    except (OSError, http.client.HTTPException, ValueError) as e:
        return False, None, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def run_clients(port, n, seconds, max_tokens, timeout, seed):
    """n threads streaming back to back for `seconds`. Returns (done, errors, ttfts)."""
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    stats = {"done": 0, "errors": [], "ttft": []}

    def client(i):
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < stop_at:
            ok, ttft, err = stream_once(port, rng, max_tokens, timeout)
            with lock:
                if ok:
                    stats["done"] += 1
                else:
                    stats["errors"].append(err)
                if ttft is not None:
                    stats["ttft"].append(ttft)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, stats


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def idle_sample(pid, settle):
    time.sleep(settle)  # finished connections' threads exit, freed memory settles
    return proc_sample(pid)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/ember")
    ap.add_argument("--np", type=int, default=4, help="server slots (-np)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=300, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=20, help="seconds of load before the first sample")
    ap.add_argument("--every", type=float, default=10, help="seconds between samples")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=600, help="per-request socket timeout")
    ap.add_argument("--rss-pct", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=3.0, help="idle seconds before the start/end samples")
    ap.add_argument("server_args", nargs="*", help="extra `ember serve` arguments (after --)")
    args = ap.parse_args()

    proc, port, counts = start_server(args)
    pid = proc.pid
    print(f"server pid {pid} port {port}: {' '.join(proc.args)}", flush=True)
    # Warm-up: every slot runs, so that its KV cache pages are in RSS before the baseline.
    threads, _ = run_clients(port, max(args.clients, args.np), args.warmup, args.max_tokens, args.timeout, seed=1)
    for t in threads:
        t.join()
    start = idle_sample(pid, args.settle)
    print(f"start (idle): rss {start[0]:.1f} MiB, threads {start[1]}, fds {start[2]}", flush=True)

    t0 = time.monotonic()
    threads, stats = run_clients(port, args.clients, args.duration, args.max_tokens, args.timeout, seed=2)
    samples = []
    while any(t.is_alive() for t in threads):
        time.sleep(min(args.every, 1.0) if samples and time.monotonic() - t0 > args.duration else args.every)
        if proc.poll() is not None:
            break
        s = proc_sample(pid)
        samples.append(s)
        print(f"t={time.monotonic() - t0:6.0f} s  rss {s[0]:7.1f} MiB  threads {s[1]:3d}  fds {s[2]:3d}  "
              f"done {stats['done']:6d}  errors {len(stats['errors'])}", flush=True)
    for t in threads:
        t.join(args.timeout)
    wall = time.monotonic() - t0
    end = idle_sample(pid, args.settle) if proc.poll() is None else (float("nan"), -1, -1)
    print(f"end (idle):   rss {end[0]:.1f} MiB, threads {end[1]}, fds {end[2]}", flush=True)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)

    errors = stats["errors"]
    rss_growth = 100.0 * (end[0] - start[0]) / start[0]
    peak = max((s[0] for s in samples), default=float("nan"))
    print(f"\nclients {args.clients}, -np {args.np}, {args.duration:.0f} s of load ({wall:.0f} s until the last "
          f"request ended), max_tokens {args.max_tokens}")
    print(f"requests done {stats['done']} ({stats['done'] / wall:.2f}/s), errors {len(errors)}")
    print(f"TTFT p50 {pct(stats['ttft'], 50) * 1e3:.0f} ms, p95 {pct(stats['ttft'], 95) * 1e3:.0f} ms")
    print(f"RSS {start[0]:.1f} -> {end[0]:.1f} MiB ({rss_growth:+.2f}%), peak {peak:.1f}; threads {start[1]} -> "
          f"{end[1]}, peak {max((s[1] for s in samples), default=-1)}; fds {start[2]} -> {end[2]}, peak "
          f"{max((s[2] for s in samples), default=-1)}; server exit {rc}; access-log lines {counts['log_lines']}")
    for e in errors[:10]:
        print("  error:", e)
    ok = not errors and end[1] == start[1] and end[2] == start[2] and rss_growth <= args.rss_pct and rc == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
