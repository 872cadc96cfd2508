"""Painting speed through the production entry point, `dm2gal.paint.paint`: per-voxel against dense.

Random input mass fields (written to Zarr in a temporary folder, as the pipeline's
fields are) and a randomly initialised network of the chosen preset (the speed does
not depend on the weights). Every voxel is a candidate (honest mode, threshold 0), so
no tile is skipped. Dense painting (`method='dense'`: `dm2gal.dense.predict_region`)
covers the whole region^3 of a periodic box of side max(region, patch); per-voxel
painting (`method='per_voxel'`: `dm2gal.inference.predict` on a
`dm2gal.sampler.PatchSource`) covers the corner of side --per-voxel-region. Both run
as the paint stage runs them (on a GPU: bf16 autocast, channels-last-3d, cuDNN
autotuning), including the normalisation, the decoding and the Zarr output; the
script reports their largest relative difference on the voxels both painted.

    python benchmarks/paint.py --preset paper --device cuda --region 256 --tile 128
    python benchmarks/paint.py --preset small --device cpu --region 64 --tile 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dm2gal import paint  # noqa: E402
from dm2gal.fields import field_attrs, read_field, write_field  # noqa: E402
from dm2gal.model import build_model, forward_flops, model_config  # noqa: E402

NORM = dict(input_mean=[0.0, 0.0], input_std=[1.0, 1.0], target_mean=0.0, target_std=1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--region", type=int, default=64, help="dense region edge [voxels]")
    ap.add_argument("--tile", type=int, default=32, help="dense tile edge [voxels] (paint.tile)")
    ap.add_argument("--per-voxel-region", type=int, default=12, help="per-voxel region edge [voxels]")
    ap.add_argument("--batch", type=int, default=256, help="per-voxel batch size (paint.batch)")
    ap.add_argument("--max-memory-gb", type=float, default=8.0, help="paint.max_memory_gb (inputs in memory)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--workdir", default=None, help="folder for the Zarr fields (default: a temporary one)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = model_config(args.preset)
    net = build_model(cfg).eval()
    n = max(args.region, cfg["patch"])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(1)
        paths, dm_attrs = {}, None
        for name in ("dm_mass", "subhalo_mass"):  # masses; normalised as log10(1 + M)
            paths[name] = root / f"{name}.zarr"
            attrs = field_attrs(box_size=float(n), n_grid=n, source="benchmark", snapshot=0, mas="CIC", quantity=name)
            write_field(paths[name], (1 + 99 * rng.random((n,) * 3, dtype=np.float32)), attrs)
            dm_attrs = dm_attrs or attrs

        def run(method: str, size: int, name: str) -> tuple[dict, float]:
            t0 = time.perf_counter()
            summary = paint.paint(net, NORM, paths["dm_mass"], paths["subhalo_mass"], root / f"{name}.zarr",
                                  start=(0, 0, 0), size=size, attrs=paint.painted_attrs(dm_attrs, (0, 0, 0), size,
                                                                                        "honest", "benchmark"),
                                  occupancy=paint.Occupancy(threshold=0.0),
                                  settings=paint.Settings(method=method, tile=args.tile, batch=args.batch,
                                                          device=args.device, max_memory_gb=args.max_memory_gb))
            return summary, time.perf_counter() - t0

        run("per_voxel", 2, "warm_voxel")  # warm-up
        voxel, voxel_wall = run("per_voxel", args.per_voxel_region, "per_voxel")
        run("dense", min(args.tile, args.region), "warm_dense")  # one full tile (cuDNN picks per shape)
        dense, dense_wall = run("dense", args.region, "dense")
        r = args.per_voxel_region
        want = read_field(root / "per_voxel.zarr")[0].astype(np.float64)
        got = read_field(root / "dense.zarr")[0][:r, :r, :r].astype(np.float64)
        diff = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{torch.get_num_threads()}"
    out = dict(preset=args.preset, patch=cfg["patch"], device=device_name, entry_point="dm2gal.paint.paint",
               per_voxel_voxels=voxel["painted_voxels"], per_voxel_seconds=round(voxel["seconds"], 3),
               per_voxel_voxels_per_s=voxel["voxels_per_second"], per_voxel_wall_seconds=round(voxel_wall, 3),
               dense_voxels=dense["painted_voxels"], dense_tile=args.tile, dense_seconds=round(dense["seconds"], 3),
               dense_voxels_per_s=dense["voxels_per_second"], dense_wall_seconds=round(dense_wall, 3),
               dense_wall_voxels_per_s=args.region ** 3 / dense_wall,
               speedup=dense["voxels_per_second"] / voxel["voxels_per_second"],
               per_voxel_gflop_per_voxel=forward_flops(cfg) / 1e9,
               max_relative_difference=diff)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
