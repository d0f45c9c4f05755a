#!/usr/bin/env python3
"""How to stream a model's layers from disk: pread into a buffer against mmap with madvise.

Reads a GGUF file's layers in order (blk.0.*, blk.1.*, ... found from the tensor table),
the file evicted from the page cache first (posix_fadvise DONTNEED), in two ways:
  pread:  each layer's byte range read into one reused buffer, then DONTNEED on the range
          (what src/runtime/stream.c does, without the prefetch thread);
  pread+willneed: the same, with posix_fadvise(WILLNEED) on layer i+1 before layer i's
          pread, so the kernel reads ahead a whole layer at once;
  direct: pread with O_DIRECT into a page-aligned buffer (no page cache), ranges widened
          to 4 KiB;
  mmap:   the file mapped; madvise(WILLNEED) on layer i+1, one byte of every page of layer
          i touched, then madvise(DONTNEED) and posix_fadvise(DONTNEED) on layer i.
Prints the seconds each pass takes, the read rate, and the peak resident set of a child
process that does only that pass (getrusage), so the two bounds on memory can be compared.

    python3 scripts/streaming-read-modes.py /root/.cache/ember/models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf
"""
import mmap
import os
import resource
import struct
import sys
import time


def layer_ranges(path):
    """[(start, end)] of each blk.N's tensor data, from the GGUF tensor table."""
    f = open(path, "rb")
    data = f.read(16 << 20)  # the header and tables of files of this size fit
    magic, ver, n_t, n_kv = struct.unpack_from("<IIQQ", data, 0)
    assert magic == 0x46554747 and ver >= 2
    off = 24
    align = 32

    def string(o):
        n = struct.unpack_from("<Q", data, o)[0]
        return data[o + 8:o + 8 + n].decode("utf-8", "replace"), o + 8 + n
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(t, o):
        if t == 8:
            return string(o)
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o)
            o += 12
            v = None
            for _ in range(n):
                v, o = value(et, o)
            return v, o
        v = int.from_bytes(data[o:o + sizes[t]], "little")
        return v, o + sizes[t]
    for _ in range(n_kv):
        k, off = string(off)
        t = struct.unpack_from("<I", data, off)[0]
        v, off = value(t, off + 4)
        if k == "general.alignment":
            align = v
    tensors = []
    for _ in range(n_t):
        name, off = string(off)
        nd = struct.unpack_from("<I", data, off)[0]
        off += 4 + 8 * nd
        _, toff = struct.unpack_from("<IQ", data, off)
        off += 12
        tensors.append((name, toff))
    base = (off + align - 1) // align * align
    size = os.path.getsize(path)
    offs = sorted(t[1] for t in tensors) + [size - base]
    nxt = {o: offs[i + 1] for i, o in enumerate(offs[:-1])}
    layers = {}
    for name, toff in tensors:
        if name.startswith("blk."):
            l = int(name.split(".")[1])
            s, e = base + toff, base + nxt[toff]
            a, b = layers.get(l, (s, e))
            layers[l] = (min(a, s), max(b, e))
    return [layers[l] for l in sorted(layers)]


def evict(fd):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def pass_pread(path, ranges, willneed=False):
    fd = os.open(path, os.O_RDONLY)
    evict(fd)
    buf = bytearray(max(e - s for s, e in ranges))
    mv = memoryview(buf)
    t = time.time()
    for i, (s, e) in enumerate(ranges):
        if willneed:
            if i == 0:
                os.posix_fadvise(fd, s, e - s, os.POSIX_FADV_WILLNEED)
            if i + 1 < len(ranges):
                os.posix_fadvise(fd, ranges[i + 1][0], ranges[i + 1][1] - ranges[i + 1][0], os.POSIX_FADV_WILLNEED)
        done = 0
        while done < e - s:
            done += os.preadv(fd, [mv[done:e - s]], s + done)
        os.posix_fadvise(fd, s, e - s, os.POSIX_FADV_DONTNEED)
    return time.time() - t


def pass_direct(path, ranges):
    fd = os.open(path, os.O_RDONLY)
    evict(fd)
    os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    pg = 4096
    big = max((e + pg - 1) // pg * pg - s // pg * pg for s, e in ranges)
    buf = mmap.mmap(-1, big)  # page-aligned, as O_DIRECT needs
    mv = memoryview(buf)
    t = time.time()
    for s, e in ranges:
        a, b = s // pg * pg, (e + pg - 1) // pg * pg
        done = 0
        while done < b - a:
            r = os.preadv(fd, [mv[done:b - a]], a + done)
            if r <= 0:
                break
            done += r
    return time.time() - t


def pass_mmap(path, ranges):
    fd = os.open(path, os.O_RDONLY)
    evict(fd)
    size = os.path.getsize(path)
    m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    pg = mmap.PAGESIZE
    t = time.time()
    for i, (s, e) in enumerate(ranges):
        a = s // pg * pg
        if i + 1 < len(ranges):
            s2, e2 = ranges[i + 1]
            m.madvise(mmap.MADV_WILLNEED, s2 // pg * pg, e2 - s2 // pg * pg)
        x = 0
        for p in range(a, e, pg):
            x ^= m[p]
        m.madvise(mmap.MADV_DONTNEED, a, e - a)
        os.posix_fadvise(fd, a, e - a, os.POSIX_FADV_DONTNEED)
    return time.time() - t


def child(mode, path):
    ranges = layer_ranges(path)
    import gc
    gc.collect()
    sec = pass_mmap(path, ranges) if mode == "mmap" else pass_direct(path, ranges) if mode == "direct" \
        else pass_pread(path, ranges, mode == "pread+willneed")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    total = sum(e - s for s, e in ranges)
    print("%-6s %6.2f s  %6.2f GB/s  peak RSS %6.1f MiB  (%d layers, %.1f MiB, largest %.1f MiB)" % (
        mode, sec, total / sec / 1e9, rss, len(ranges), total / 1048576.0,
        max(e - s for s, e in ranges) / 1048576.0))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("pread", "pread+willneed", "direct", "mmap"):
        child(sys.argv[1], sys.argv[2])
        sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(1)
    import subprocess
    for rep in range(2):
        for mode in ("pread", "pread+willneed", "direct", "mmap"):
            subprocess.run([sys.executable, __file__, mode, sys.argv[1]], check=True)
