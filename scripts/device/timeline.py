#!/usr/bin/env python3
"""Where a training step's GPU time goes, from cupti_trace.c's file: per
step (steps end at the last AdamW kernel of each run of them), the wall
time, the time some kernel/copy/memset ran, the idle time in gaps by size,
the largest gaps with their neighbours and what the host was calling."""
import argparse
import bisect
import collections


def load(path):
    gpu, host = [], []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 4)
            if len(parts) < 5:
                continue
            start, end, stream, kind, name = int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4]
            (host if kind in "RY" else gpu).append((start, end, stream, kind, name))
    gpu.sort()
    host.sort()
    return gpu, host


def step_ends(gpu):
    ends = []
    for i, g in enumerate(gpu):
        if "adamw" in g[4] and (i + 1 == len(gpu) or "adamw" not in gpu[i + 1][4]):
            ends.append(i)
    return ends


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=15, help="largest gaps to list per step")
    a = ap.parse_args()
    gpu, host = load(a.trace)
    ends = step_ends(gpu)
    host_starts = [h[0] for h in host]
    for n in range(1, len(ends)):
        lo, hi = ends[n - 1] + 1, ends[n] + 1
        ops = gpu[lo:hi]
        t0, t1 = gpu[ends[n - 1]][1], max(o[1] for o in ops)
        busy, gaps, cur = 0, [], t0
        prev = gpu[ends[n - 1]]
        for o in ops:  # sorted by start: a gap is where nothing covers the time
            if o[0] > cur:
                gaps.append((o[0] - cur, cur, prev, o))
            if o[1] > cur:
                busy += o[1] - max(o[0], cur)
                cur = o[1]
                prev = o
        wall = t1 - t0
        kinds = collections.Counter(o[3] for o in ops)
        print(f"step {n + 1}: wall {wall / 1e6:.2f} ms, GPU busy {busy / 1e6:.2f} ms, idle "
              f"{(wall - busy) / 1e6:.2f} ms in {len(gaps)} gaps; {kinds['K']} kernels, "
              f"{kinds['C']} copies, {kinds['S']} memsets")
        buckets = collections.OrderedDict((k, [0, 0]) for k in ("<2us", "2-10us", "10-100us", ">=100us"))
        for g in gaps:
            us = g[0] / 1e3
            b = "<2us" if us < 2 else "2-10us" if us < 10 else "10-100us" if us < 100 else ">=100us"
            buckets[b][0] += 1
            buckets[b][1] += g[0]
        print("  gaps: " + ", ".join(f"{k} {c} = {ns / 1e6:.2f} ms" for k, (c, ns) in buckets.items()))
        for size, at, before, after in sorted(gaps, reverse=True)[: a.top]:
            i = bisect.bisect_left(host_starts, at - 2_000_000)
            calls = collections.Counter()
            while i < len(host) and host[i][0] < at + size:
                h = host[i]
                if h[1] > at:
                    calls[h[4]] += 1
                i += 1
            print(f"  {size / 1e3:8.1f} us at +{(at - t0) / 1e6:7.2f} ms: after {before[4][:50]} | "
                  f"before {after[4][:50]} | host: {dict(calls.most_common(4))}")


if __name__ == "__main__":
    main()
