"""Patches per second of dm2gal.sampler.PatchSource.cut (weighted draws + rotation + periodic gather).

    python benchmarks/sampler.py [--n 128] [--patch 21 65] [--batch 32 64] [--threads 1] [--device cpu]

Synthetic log-normal fields in memory; prints one line per (patch, batch): patches/s,
MB/s of patch data produced and ms per batch. Imports only numpy/torch/dm2gal.
"""

import argparse
import time

import numpy as np
import torch

from dm2gal.sampler import PatchSource, WeightedDraws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--patch", type=int, nargs="+", default=[21, 65])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.n
    fields = [rng.lognormal(23, 1, (n, n, n)).astype(np.float32), rng.lognormal(20, 3, (n, n, n)).astype(np.float32)]
    source = PatchSource.from_arrays(fields, [10.0, 9.0], [0.5, 1.0], device=args.device)
    m = 20000
    draws = WeightedDraws(rng.integers(0, n, (m, 3)), rng.standard_normal(m), rng.random(m), seed=0)
    sync = torch.cuda.synchronize if source.device.type == "cuda" else (lambda: None)
    print(f"device {source.device} ({source.data.dtype}), n={n}, threads={args.threads}")
    for patch in args.patch:
        for batch in args.batch:
            centres, rot, *_ = draws.draw(batch)
            source.cut(centres, rot, patch)  # warm-up
            sync()
            t0, k = time.perf_counter(), 0
            while time.perf_counter() - t0 < args.seconds:
                centres, rot, *_ = draws.draw(batch)
                x = source.cut(centres, rot, patch)
                k += 1
            sync()
            dt = (time.perf_counter() - t0) / k
            mb = x.numel() * x.element_size() / 1e6
            print(f"patch {patch:3d}^3 batch {batch:4d}: {batch / dt:10.0f} patches/s  "
                  f"{mb / dt:8.0f} MB/s  {1e3 * dt:8.2f} ms/batch")


if __name__ == "__main__":
    main()
