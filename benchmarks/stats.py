"""Stats stage: wall time and peak memory of `dm2gal.stats.summarise` per test-cube size.

    .venv/bin/python benchmarks/stats.py [--sizes 50 96] [--threads 2]

For each cube size, in a fresh subprocess (peak memory = its ru_maxrss), draws a
sparse lognormal 'stellar-mass' cube with the mini-universe's voxel (40/128 Mpc/h)
and runs every statistic of the default config (P(k), three bispectrum triangles
x 25 angles, PDF, r(k) and T(k) against a second cube) with the given threads.
The stats rule runs this once per model (truth, dm2gal, HOD, oracle).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

VOXEL = 40.0 / 128  # Mpc/h, the mini-universe's grid


def one(size: int, threads: int) -> dict:
    from dm2gal import stats

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["stats"]
    rng = np.random.default_rng(0)
    cubes = [np.where(rng.random((size,) * 3) < 0.05, rng.lognormal(20, 2, (size,) * 3), 0).astype(np.float32)
             for _ in range(2)]
    t0 = time.perf_counter()
    stats.summarise(cubes[0], size * VOXEL, cfg, truth=cubes[1], threads=threads)
    return dict(size=size, box_mpc_h=size * VOXEL, threads=threads, seconds=time.perf_counter() - t0,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 96])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threads)))
        return
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['size']}^3 voxels ({r['box_mpc_h']:.1f} Mpc/h), {r['threads']} threads: "
              f"{r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
