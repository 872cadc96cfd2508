"""Time and memory of the paint stage's galaxy steps on a large sparse painted field.

Writes an n^3 painted field and its scatter field (Zarr, the pipeline's chunking) whose
painted voxels are the 8 CIC voxels of random subhalos (`--subhalos`, masses log-uniform),
then times `dm2gal.paint.calibrate_galaxies` (a galaxy calibration of two knots) and
`dm2gal.paint.deposit_galaxies` (without it; `paint.deposit: galaxies` runs both in the
deposit's one pass) on it, and reports the peak resident memory of the
process. Both hold only the painted voxels, so their memory should follow the number of
galaxies, not n^3. Usage:

    python benchmarks/galaxy_deposit.py [--n 512] [--subhalos 300000] [--chunk 128] [--out /tmp/bench_deposit]
"""

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from dm2gal import paint
from dm2gal.calibration import Calibration
from dm2gal.cic import corners
from dm2gal.fields import create_field, field_attrs


def painted_fields(out: Path, n: int, n_subhalos: int, chunk: int, seed: int = 0) -> dict:
    """Write the painted and scatter fields (box side n Mpc/h, 1 Mpc/h voxels) slab by slab of
    chunks; returns the subhalos {SubhaloPos, SubhaloMass}."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, n, (n_subhalos, 3))
    mass = 10 ** rng.uniform(10, 14, n_subhalos)
    attrs = field_attrs(box_size=float(n), n_grid=n, source="dark", snapshot=99, mas="CIC", quantity="stellar_mass",
                        origin=[0, 0, 0], parent_n_grid=n, parent_box_size=float(n))
    keys, values = [], []
    for index, share in corners(pos, n, float(n)):
        keys.append(index.T)
        values.append(1e-3 * mass * share)
    keys, values = np.concatenate(keys), np.concatenate(values)
    painted, scatter = (create_field(out / name, attrs, chunk=chunk) for name in ("painted.zarr", "scatter.zarr"))
    for x0 in range(0, n, chunk):
        slab = np.zeros((min(chunk, n - x0), n, n), np.float32)
        sel = (keys[:, 0] >= x0) & (keys[:, 0] < x0 + chunk)
        np.add.at(slab, tuple((keys[sel] - [x0, 0, 0]).T), values[sel])
        painted[x0:x0 + chunk] = slab
        scatter[x0:x0 + chunk] = np.where(slab > 0, 0.3, 0.0).astype(np.float32)  # dex
    return {"SubhaloPos": pos, "SubhaloMass": mass}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--subhalos", type=int, default=300_000)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_deposit"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    subs = painted_fields(args.out, args.n, args.subhalos, args.chunk)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cal = Calibration((8.0, 12.0), (0.0, 0.0), 1.0, 12.0, galaxy_log10_mass=(9.0, 11.0),
                      galaxy_log10_ratio=(0.0, -0.1), galaxy_scatter_factor=(1.0, 0.8))
    t0 = time.perf_counter()
    paint.calibrate_galaxies(args.out / "painted.zarr", cal, (0, 0, 0), args.n, float(args.n), subs)
    t1 = time.perf_counter()
    voxels = paint.deposit_galaxies(args.out / "painted.zarr", args.out / "scatter.zarr", (0, 0, 0), args.n,
                                    float(args.n), subs, cal.galaxy_scatter_knots())["galaxy_deposit_voxels"]
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.n}^3 field, chunk {args.chunk}, {args.subhalos} subhalos, {voxels} voxels painted after: "
          f"galaxy calibration {t1 - t0:.1f} s, galaxy deposit {t2 - t1:.1f} s; peak RSS {peak:.0f} MiB "
          f"({base_rss:.0f} MiB after writing the fields)")
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
