#!/usr/bin/env python3
"""Decode speed and peak RSS of `ember run` under --mem-budget (STREAMING.md's tables).

For each model file and each budget (fractions of the file size; 1.0 = no budget, plain
mmap) and prefetch depth, the file's pages are first evicted from the page cache with
posix_fadvise(POSIX_FADV_DONTNEED) (dropping all caches is not needed or done), then
`/usr/bin/time -v build/ember bench -m FILE -p 0 -n N -r 1 --no-bw` runs (llama-bench's
tgN: N single-token decodes from an empty context, after one warmup run; the file may have
no tokenizer); tokens/s is bench's tgN, the peak RSS time's "Maximum resident set size".
Use a private copy of the file: pages another process maps stay in the page cache and are
charged to its cgroup, so neither the eviction nor a cgroup limit reaches them. With --cgroup it also tries to make a memory cgroup (v1 or
v2, nested under this process's own) and runs plain mmap (no budget) in it with the
budget as its memory limit; when no cgroup can be made it says so (ulimit cannot cap
RSS). Writes a Markdown table to stdout, the rows as JSON (--json) and a PNG plot
(--png, needs matplotlib).

    python3 scripts/bench-streaming.py -m models/bench/llama3.2-1b-q5_0.gguf \\
        -m /root/.cache/ember/models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf \\
        --json streaming.json --png docs/streaming.png --cgroup
"""
import argparse
import json
import os
import re
import subprocess
import sys

def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def own_cgroup_dir():
    """A directory where a child memory cgroup could be made, or None."""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        if "memory" in ctrl.split(","):
            d = "/sys/fs/cgroup/memory" + path
            if os.path.isdir(d):
                return d, "v1"
    for line in lines:
        if line.startswith("0::"):
            d = "/sys/fs/cgroup" + line[3:]
            if os.path.isdir(d):
                return d, "v2"
    return None


def make_cgroup(limit):
    """(path, version) of a new memory cgroup limited to `limit` bytes, or (None, why)."""
    own = own_cgroup_dir()
    if not own:
        return None, "no memory cgroup hierarchy is mounted"
    d, ver = own
    child = os.path.join(d, "ember-stream-%d" % os.getpid())
    try:
        os.mkdir(child)
    except OSError as e:
        return None, "cannot create %s: %s" % (child, e.strerror)
    try:
        if ver == "v1":
            open(os.path.join(child, "memory.limit_in_bytes"), "w").write(str(limit))
        else:
            open(os.path.join(child, "memory.max"), "w").write(str(limit))
    except OSError as e:
        os.rmdir(child)
        return None, "cannot set the limit in %s: %s" % (child, e.strerror)
    return (child, ver), None


def run(ember, path, n, threads, budget=None, prefetch=1, cgroup=None, mode=None, timeout=300):
    evict(path)
    cmd = ["/usr/bin/time", "-v", ember, "bench", "-m", path, "-p", "0", "-n", str(n), "-r", "1", "--no-bw",
           "-t", str(threads)]
    if budget:
        cmd += ["--mem-budget", str(budget), "--prefetch", str(prefetch)]
    if cgroup:  # move the shell into the cgroup, then exec the command there
        cmd = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup[0]] + cmd
    env = dict(os.environ)
    env.pop("EMBER_STREAM", None)
    if mode:
        env["EMBER_STREAM"] = mode
    row = {"budget": budget or 0, "prefetch": prefetch if budget else None, "cgroup": bool(cgroup),
           "mode": mode or ("mmap" if budget else None)}
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        row.update(rc=-1, tps=None, rss_mib=None, plan="", error="no result in %d s" % timeout)
        return row
    err = p.stderr
    row["rc"] = p.returncode
    m = re.search(r"\|\s*tg\d+\s*\|\s*([\d.]+) ±", p.stdout)
    row["tps"] = float(m.group(1)) if m else None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    row["rss_mib"] = int(m.group(1)) / 1024.0 if m else None
    row["plan"] = ""
    if budget and not cgroup:
        info = subprocess.run([ember, "info", "-m", path, "--mem-budget", str(budget), "--prefetch", str(prefetch),
                               "-c", str(n + 2)], capture_output=True, text=True).stdout
        m = re.search(r"^plan\s+(.*)$", info, re.M)
        row["plan"] = m.group(1) if m else ""
    if p.returncode:
        row["error"] = next((l for l in err.splitlines() if l.startswith("error:")), err.strip()[-200:])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("--ember", default="build/ember")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--fractions", default="1.0,0.75,0.5,0.25,0.1")
    ap.add_argument("--prefetch", default="0,1,2")
    ap.add_argument("--cgroup", action="store_true", help="also plain mmap in a memory cgroup at each budget")
    ap.add_argument("--pread", default="0.5", help="fractions where EMBER_STREAM=pread also runs (prefetch 1)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per run")
    ap.add_argument("--json")
    ap.add_argument("--png")
    a = ap.parse_args()
    fractions = [float(x) for x in a.fractions.split(",")]
    depths = [int(x) for x in a.prefetch.split(",")]
    rows = []
    cg_note = None
    for path in a.model:
        size = os.path.getsize(path)
        bw = subprocess.run([a.ember, "info", "-m", path, "--mem-budget", str(size // 2)],
                            capture_output=True, text=True).stdout
        m = re.search(r"disk ([\d.]+) GB/s", bw)
        disk = float(m.group(1)) if m else None
        for f in fractions:
            budget = None if f >= 1.0 else int(size * f)
            runs = [(pf, None) for pf in (depths if budget else [None])]
            if budget and f in [float(x) for x in a.pread.split(",") if x]:
                runs.append((1, "pread"))
            for pf, mode in runs:
                r = run(a.ember, path, a.n, a.threads, budget, pf if pf is not None else 1, mode=mode,
                        timeout=a.timeout)
                r.update(model=os.path.basename(path), file_mib=size / 1048576.0, fraction=f, disk_gbps=disk)
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
                if r.get("error") and "minimum" in r["error"]:
                    break  # the other depths fail the same way
            if a.cgroup and budget:
                cg, why = make_cgroup(budget)
                if cg:
                    try:
                        r = run(a.ember, path, a.n, a.threads, None, 1, cgroup=cg, timeout=a.timeout)
                    finally:
                        try:
                            os.rmdir(cg[0])
                        except OSError:
                            pass
                    r.update(model=os.path.basename(path), file_mib=size / 1048576.0, fraction=f, disk_gbps=disk,
                             budget=budget)
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                else:
                    cg_note = why
    print("| model | budget | prefetch (streaming) | decode t/s | peak RSS MiB | plan |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        b = "none (mmap)" if not r["budget"] else "%.0f MiB (%.0f%%)" % (r["budget"] / 1048576.0, 100 * r["fraction"])
        how = "plain mmap in a cgroup" if r["cgroup"] else ("-" if r["prefetch"] is None
                                                             else "%d (%s)" % (r["prefetch"], r["mode"]))
        tps = "%.2f" % r["tps"] if r["tps"] else "error"
        rss = "%.0f" % r["rss_mib"] if r["rss_mib"] else "-"
        plan = r.get("error") or r["plan"]
        print("| %s | %s | %s | %s | %s | %s |" % (r["model"], b, how, tps, rss, plan))
    if a.cgroup and cg_note:
        print("\nno cgroup: %s" % cg_note)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    if a.png:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("no matplotlib: no plot", file=sys.stderr)
            return
        models = sorted(set(r["model"] for r in rows))
        fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 7), squeeze=False)
        for j, mname in enumerate(models):
            mr = [r for r in rows if r["model"] == mname]
            for pf in depths + ["mmap"]:
                pts = [r for r in mr if r["tps"] and ((pf == "mmap" and (r["cgroup"] or not r["budget"]))
                                                      or (pf != "mmap" and r["budget"] and not r["cgroup"]
                                                          and r["prefetch"] == pf and r["mode"] == "mmap"))]
                pts.sort(key=lambda r: r["fraction"])
                if not pts:
                    continue
                lab = "plain mmap" + (" (cgroup at the budget)" if any(r["cgroup"] for r in pts) else "") \
                    if pf == "mmap" else "prefetch %d" % pf
                axes[0][j].plot([100 * r["fraction"] for r in pts], [r["tps"] for r in pts], "o-", label=lab)
                axes[1][j].plot([100 * r["fraction"] for r in pts], [r["rss_mib"] for r in pts], "o-", label=lab)
            axes[1][j].plot([100 * f for f in fractions], [f * mr[0]["file_mib"] for f in fractions], "k:",
                            label="budget")
            axes[0][j].set_title(mname + " (measured under load)")
            axes[0][j].set_ylabel("decode tokens/s")
            axes[1][j].set_ylabel("peak RSS MiB")
            axes[1][j].set_xlabel("budget, % of the file")
            for ax in axes[:, j]:
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.png, dpi=90)


if __name__ == "__main__":
    main()
