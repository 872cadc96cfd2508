"""Training throughput of the dm2gal network on one GPU: samples/s, data-wait fraction, TFLOP/s.

    python benchmarks/train_gpu.py [--preset paper] [--batch 64] [--n 1024] [--steps 60] [--compile]

The training step of dm2gal.train without Lightning's bookkeeping: weighted draws and
rotated periodic patches cut on the GPU from float16 fields held in GPU memory
(synthetic log-normal fields of n^3 voxels), the network in channels-last-3d under
bf16 autocast, MSE, Adam with weight decay. Reports
  - samples/s of the free-running loop (no synchronisation inside the loop),
  - the fraction of step time spent producing the batch (draw + cut), from a second
    loop that synchronises after the cut and after the optimiser step,
  - achieved TFLOP/s, with the FLOPs of one training step counted by
    torch.utils.flop_counter (forward + backward) and checked against the analytic
    forward count of dm2gal.model.forward_flops.
Imports only torch, numpy and dm2gal.{model, sampler, rotations}.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dm2gal.model import build_model, forward_flops, model_config, n_parameters
from dm2gal.sampler import PatchSource, WeightedDraws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=1024, help="field grid size (2 channels float16 on the GPU)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    gen = torch.Generator(device=dev).manual_seed(0)
    n = args.n
    data = torch.empty((n, n, n, 2), dtype=torch.float16, device=dev)
    for a in range(0, n, 128):  # normalised log-masses: Gaussian numbers are what the network sees
        data[a:a + 128] = torch.randn((min(128, n - a), n, n, 2), generator=gen, device=dev, dtype=torch.float16)
    source = PatchSource(data)
    rng = np.random.default_rng(0)
    m = 1_000_000
    draws = WeightedDraws(rng.integers(0, n, (m, 3)), rng.standard_normal(m).astype(np.float32), rng.random(m), seed=0)

    cfg = model_config(args.preset)
    net = build_model(cfg).to(dev).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)
    step_net = torch.compile(net) if args.compile else net
    patch = cfg["patch"]

    def batch():
        centres, rot, y = draws.draw(args.batch)
        return source.cut(centres, rot, patch), y.to(dev, non_blocking=True)

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = step_net(x).squeeze(1).float()
        loss = torch.nn.functional.mse_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step(*batch())
    torch.cuda.synchronize()

    # 1. free-running throughput
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step(*batch())
    torch.cuda.synchronize()
    free = (time.perf_counter() - t0) / args.steps

    # 2. where the time goes: synchronise after producing the batch and after the step
    t_data = t_total = 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        x, y = batch()
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        step(x, y)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_total += t2 - t0

    # 3. FLOPs of one training step (eager network; counts forward and backward)
    x, y = batch()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = net(x).squeeze(1).float()
        torch.nn.functional.mse_loss(pred, y).backward()
    step_flops = counter.get_total_flops()
    analytic_fwd = forward_flops(cfg) * args.batch
    out = {
        "device": torch.cuda.get_device_name(), "preset": args.preset, "patch": patch, "batch": args.batch,
        "n_grid": n, "compile": args.compile, "parameters": n_parameters(net),
        "samples_per_s": args.batch / free, "step_ms": 1e3 * free,
        "data_fraction_of_step": t_data / t_total, "data_ms_per_batch": 1e3 * t_data / args.steps,
        "synchronised_step_ms": 1e3 * t_total / args.steps,
        "train_step_gflop": step_flops / 1e9, "analytic_forward_gflop": analytic_fwd / 1e9,
        "achieved_tflops": step_flops / free / 1e12,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9, "final_loss": float(loss.detach()),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
