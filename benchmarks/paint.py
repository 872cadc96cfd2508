"""Painting speed: voxels per second, per-voxel (batched patches) against dense (shift and stitch).

Random input fields and a randomly initialised network of the chosen preset (the
speed does not depend on the weights). Per-voxel painting cuts one P^3 patch per
voxel with `dm2gal.sampler.PatchSource` and runs `dm2gal.inference.predict` (the
training code path); dense painting runs `dm2gal.dense.predict_region` over a
region^3 cube in tiles. Both paint the same voxels, and the script reports their
largest relative difference. Imports only numpy, torch and dm2gal's torch modules,
so it runs on a bare GPU machine:

    python benchmarks/paint.py --preset paper --device cuda --region 256 --tile 128
    python benchmarks/paint.py --preset small --device cpu --region 64 --tile 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dm2gal.dense import predict_region, to_dense  # noqa: E402
from dm2gal.inference import predict  # noqa: E402
from dm2gal.model import build_model, forward_flops, model_config  # noqa: E402
from dm2gal.sampler import PatchSource  # noqa: E402

NORM = dict(input_mean=[0.0, 0.0], input_std=[1.0, 1.0], target_mean=0.0, target_std=1.0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--region", type=int, default=64, help="dense region edge [voxels]")
    ap.add_argument("--tile", type=int, default=32, help="dense tile edge [voxels]")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="dense precision")
    ap.add_argument("--channels-last", action="store_true", help="dense in channels_last_3d memory format")
    ap.add_argument("--n-voxels", type=int, default=2048, help="voxels painted per-voxel")
    ap.add_argument("--batch", type=int, default=256, help="per-voxel batch size")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    cfg = model_config(args.preset)
    patch, half = cfg["patch"], cfg["patch"] // 2
    net = build_model(cfg).eval().to(args.device)
    side = args.region + patch + 8  # the region, its halo, and the stride margin
    rng = np.random.default_rng(1)
    fields = rng.random((2, side, side, side), dtype=np.float32) * 100  # masses; normalised as log10(1 + M)
    normed = np.log10(1.0 + fields).astype(np.float32)

    def read(first, shape):
        return normed[:, first[0]:first[0] + shape[0], first[1]:first[1] + shape[1], first[2]:first[2] + shape[2]]

    local = rng.integers(0, args.region, size=(args.n_voxels, 3))
    source = PatchSource.from_arrays(list(fields), NORM["input_mean"], NORM["input_std"], device=args.device)
    predict(net, source, local[:64] + half, NORM, batch_size=args.batch)  # warm-up
    sync(args.device)
    t0 = time.perf_counter()
    per_voxel = predict(net, source, local + half, NORM, batch_size=args.batch)
    sync(args.device)
    t_voxel = time.perf_counter() - t0

    dense = to_dense(net)
    dtype = getattr(torch, args.dtype)
    start = (half, half, half)
    if args.channels_last:
        dense = dense.to(memory_format=torch.channels_last_3d)
    for _ in predict_region(dense, read, start, min(args.tile, args.region), tile=args.tile, device=args.device,
                            dtype=dtype, channels_last=args.channels_last):
        pass  # warm-up on one full tile (cudnn picks its algorithms per shape)
    sync(args.device)
    painted = np.empty((args.region,) * 3, np.float32)
    t0 = time.perf_counter()
    for (x, y, z), v in predict_region(dense, read, start, args.region, tile=args.tile, device=args.device,
                                       dtype=dtype, channels_last=args.channels_last):
        painted[x:x + v.shape[0], y:y + v.shape[1], z:z + v.shape[2]] = v
    sync(args.device)
    t_dense = time.perf_counter() - t0
    got = painted[local[:, 0], local[:, 1], local[:, 2]]
    diff = float(np.max(np.abs(got - per_voxel)) / np.max(np.abs(per_voxel)))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{torch.get_num_threads()}"
    out = dict(preset=args.preset, patch=patch, device=device_name, dense_dtype=args.dtype,
               channels_last=args.channels_last,
               per_voxel_voxels=args.n_voxels, per_voxel_seconds=round(t_voxel, 3),
               per_voxel_voxels_per_s=args.n_voxels / t_voxel,
               dense_voxels=args.region ** 3, dense_tile=args.tile, dense_seconds=round(t_dense, 3),
               dense_voxels_per_s=args.region ** 3 / t_dense,
               speedup=(args.region ** 3 / t_dense) / (args.n_voxels / t_voxel),
               per_voxel_gflop_per_voxel=forward_flops(cfg) / 1e9,
               max_relative_difference=diff)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
