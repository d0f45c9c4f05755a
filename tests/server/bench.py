"""Throughput of `ember serve` at 1/2/4/8 concurrent streaming clients (BENCHMARKS.md).

Each client sends greedy chat requests (distinct prompts, max_tokens tokens, ignore no
stop) back to back for --seconds; we report aggregate generated tokens/s, the median and
95th percentile of the time to first token, and the mean per-stream tokens/s. Run against a server with -np >= 8:
    build/ember serve --port 8080 -np 8 -c 1024 &
    python3 tests/server/bench.py --url http://127.0.0.1:8080
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def one_request(host, port, i, max_tokens):
    body = json.dumps({"messages": [{"role": "user", "content": f"Tell me a long story about island number {i}."}],
                       "temperature": 0, "max_tokens": max_tokens, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.time()
    c = http.client.HTTPConnection(host, port, timeout=600)
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    ttft, n = None, 0
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            data = ev[6:]
            if data == b"[DONE]":
                continue
            j = json.loads(data)
            if j["choices"] and j["choices"][0]["delta"].get("content") and ttft is None:
                ttft = time.time() - t0
            if j.get("usage"):
                n = j["usage"]["completion_tokens"]
    c.close()
    return ttft or 0.0, n, time.time() - t0


def run(host, port, clients, seconds, max_tokens):
    stats = []
    lock = threading.Lock()
    end = time.time() + seconds

    def worker(k):
        i = 0
        while time.time() < end:
            s = one_request(host, port, k * 1000 + i, max_tokens)
            with lock:
                stats.append(s)
            i += 1
    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    toks = sum(s[1] for s in stats)
    ttft = sorted(s[0] for s in stats)
    return {"clients": clients, "requests": len(stats), "tokens": toks, "agg_tok_s": toks / wall,
            "ttft_p50_ms": 1000 * percentile(ttft, 50), "ttft_p95_ms": 1000 * percentile(ttft, 95),
            "stream_tok_s": sum(s[1] / s[2] for s in stats) / len(stats)}


def percentile(xs, p):
    """Linear interpolation between closest ranks (numpy's default), xs sorted."""
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100
    i = int(k)
    return xs[i] + (xs[min(i + 1, len(xs) - 1)] - xs[i]) * (k - i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", default="1,2,4,8")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    print("| clients | requests | generated tokens | aggregate tok/s | TTFT p50 ms | TTFT p95 ms | mean per-stream tok/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in a.clients.split(",")]:
        r = run(u.hostname, u.port, n, a.seconds, a.max_tokens)
        print(f"| {r['clients']} | {r['requests']} | {r['tokens']} | {r['agg_tok_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | {r['stream_tok_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
