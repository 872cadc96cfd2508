"""Training throughput of the dm2gal network: samples/s, data-wait fraction, TFLOP/s (GPU, or CPU with --device cpu).

    python benchmarks/train_gpu.py [--preset paper] [--batch 64] [--n 1024] [--steps 60] [--compile]
    python benchmarks/train_gpu.py --device cpu --preset small --n 128 --batch 32 --steps 20 [--profile]

The training step of dm2gal.train without Lightning's bookkeeping: weighted draws and
rotated periodic patches cut on the device from fields held in its memory (synthetic
Gaussian normalised fields of n^3 voxels; float16 on a GPU, float32 on the CPU), the
network (channels-last-3d under bf16 autocast and cuDNN autotuning on a GPU, float32 on
the CPU), MSE, Adam with weight decay (fused on a GPU, as dm2gal.train uses it). Reports
  - samples/s of the free-running loop (no synchronisation inside the loop),
  - the fraction of step time spent producing the batch (draw + cut), from a second
    loop that synchronises after the cut and after the optimiser step,
  - achieved TFLOP/s, with the FLOPs of one training step counted by
    torch.utils.flop_counter (forward + backward) and checked against the analytic
    forward count of dm2gal.model.forward_flops,
  - with --profile, the operators that dominate a step (torch.profiler, self time).
With --lightning it instead times dm2gal.train.fit itself (Lightning, bf16-mixed,
validation painting each epoch) on synthetic fields; where Pylians is missing (the
GPU machine) the validation P(k) uses a numpy FFT stand-in, labelled in the output.
Imports only torch, numpy and dm2gal.{model, sampler, rotations} (plus lightning
and dm2gal.train with --lightning).
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dm2gal.model import build_model, forward_flops, model_config, n_parameters
from dm2gal.sampler import PatchSource, WeightedDraws


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def setup(args, dev: torch.device):
    """(batch(), step(x, y), net, cfg): the benchmark's data and training step on `dev`."""
    on_gpu = dev.type == "cuda"
    torch.backends.cudnn.benchmark = on_gpu
    gen = torch.Generator(device=dev).manual_seed(0)
    n, dtype = args.n, torch.float16 if on_gpu else torch.float32
    data = torch.empty((n, n, n, 2), dtype=dtype, device=dev)
    for a in range(0, n, 128):  # normalised log-masses: Gaussian numbers are what the network sees
        data[a:a + 128] = torch.randn((min(128, n - a), n, n, 2), generator=gen, device=dev, dtype=dtype)
    source = PatchSource(data)
    rng = np.random.default_rng(0)
    m = 1_000_000
    draws = WeightedDraws(rng.integers(0, n, (m, 3)), rng.standard_normal(m).astype(np.float32), rng.random(m), seed=0)
    cfg = model_config(args.preset)
    net = build_model(cfg).to(dev)
    if on_gpu:
        net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5, fused=True if on_gpu else None)
    step_net = torch.compile(net) if args.compile else net

    def batch():
        centres, rot, y, _ = draws.draw(args.batch)
        return source.cut(centres, rot, cfg["patch"]), y.to(dev, non_blocking=True)

    def step(x, y):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=on_gpu):
            pred = step_net(x if on_gpu else x.float()).squeeze(1).float()
        loss = torch.nn.functional.mse_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return batch, step, net, cfg


def timings(batch, step, dev, steps: int) -> dict:
    """Seconds per step free-running, and data / total seconds of synchronised steps."""
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(*batch())
    sync(dev)
    free = (time.perf_counter() - t0) / steps
    t_data = t_total = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = batch()
        sync(dev)
        t1 = time.perf_counter()
        step(x, y)
        sync(dev)
        t_data, t_total = t_data + t1 - t0, t_total + time.perf_counter() - t0
    return dict(free=free, data=t_data / steps, total=t_total / steps, loss=float(loss.detach()))


def step_flops(net, batch, dev) -> int:
    """FLOPs of one training step (eager network; forward and backward)."""
    x, y = batch()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = net(x if dev.type == "cuda" else x.float()).squeeze(1).float()
        torch.nn.functional.mse_loss(pred, y).backward()
    return counter.get_total_flops()


def profile(batch, step, dev, steps: int = 5, top: int = 12) -> list:
    """The operators of most self time over `steps` training steps (batch production included)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step(*batch())
        sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    return [(e.key, round(getattr(e, key) / total, 3)) for e in events[:top]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=1024, help="field grid size (2 channels held on the device)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also list the operators that dominate a step")
    ap.add_argument("--lightning", action="store_true", help="time dm2gal.train.fit instead of the bare step")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    assert dev.type != "cuda" or torch.cuda.is_available(), "no GPU: use --device cpu"
    if args.lightning:
        return lightning_fit(args)
    batch, step, net, cfg = setup(args, dev)
    for _ in range(args.warmup):
        step(*batch())
    sync(dev)
    t = timings(batch, step, dev, args.steps)
    flops = step_flops(net, batch, dev)
    out = {
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU x{torch.get_num_threads()}",
        "preset": args.preset, "patch": cfg["patch"], "batch": args.batch, "n_grid": args.n, "compile": args.compile,
        "parameters": n_parameters(net), "samples_per_s": args.batch / t["free"], "step_ms": 1e3 * t["free"],
        "data_fraction_of_step": t["data"] / t["total"], "data_ms_per_batch": 1e3 * t["data"],
        "synchronised_step_ms": 1e3 * t["total"], "train_step_gflop": flops / 1e9,
        "analytic_forward_gflop": forward_flops(cfg) * args.batch / 1e9, "achieved_tflops": flops / t["free"] / 1e12,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None,
        "final_loss": t["loss"],
    }
    if args.profile:
        out["profile_self_time_fraction"] = profile(batch, step, dev)
    print(json.dumps(out, indent=1))


def _numpy_power_spectrum(delta, side, mas="CIC", threads=1):
    """Stand-in for `dm2gal.stats.power_spectrum` where Pylians is not installed: |FFT(delta)|^2
    in linear k bins of width k_F (no mass-assignment correction)."""
    n = delta.shape[0]
    pk = np.abs(np.fft.rfftn(delta)) ** 2 * side ** 3 / n ** 6
    kf = 2 * np.pi / side
    k1 = np.fft.fftfreq(n, 1.0 / n)
    kk = np.sqrt(k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + np.arange(n // 2 + 1)[None, None, :] ** 2)
    b = np.rint(kk).astype(int).ravel()
    sel = (b > 0) & (b <= n // 2)
    num = np.bincount(b[sel], weights=pk.ravel()[sel], minlength=n // 2 + 1)[1:]
    cnt = np.bincount(b[sel], minlength=n // 2 + 1)[1:]
    return dict(k=kf * np.arange(1, n // 2 + 1), pk=num / np.maximum(cnt, 1))


def lightning_fit(args) -> None:
    import tempfile

    from dm2gal import stats, train

    try:
        import Pk_library  # noqa: F401
        pk_source = "Pylians"
    except ImportError:
        stats.power_spectrum = _numpy_power_spectrum
        pk_source = "numpy stand-in (no Pylians on this machine)"
    rng = np.random.default_rng(0)
    n, val_size, m = 256, 104, 200_000
    dm = rng.lognormal(23, 1, (n, n, n)).astype(np.float32)
    sub = np.where(rng.random((n, n, n)) < 0.01, rng.lognormal(25, 1, (n, n, n)), 0).astype(np.float32)
    coords = rng.integers(val_size, n, (m, 3))
    log_m = rng.uniform(8, 11.5, m).astype(np.float32)
    val_coords = rng.integers(0, val_size, (2000, 3))
    truth = np.zeros((val_size,) * 3)
    truth[tuple(val_coords.T)] = 10 ** rng.uniform(8, 11.5, 2000)
    data = train.TrainingData(
        dm=dm, subhalo=sub, coords=coords, log_mstar=log_m, weights=np.ones(m), importance=np.ones(m),
        val_coords=val_coords,
        val_log_mstar=np.log10(truth[tuple(val_coords.T)]).astype(np.float32), val_candidates=val_coords,
        val_start=np.zeros(3, int),
        val_truth=truth, n_grid=n, box_size=75.0 * n / 2048,
        normalisation=dict(input_mean=[10.0, 1.0], input_std=[0.5, 3.0], target_mean=9.5, target_std=0.8))
    steps = args.steps * 2
    with tempfile.TemporaryDirectory() as tmp:
        res = train.fit(data, model_config(args.preset, outputs=2), selection=dict(mas="CIC", k_range=[0.5, 6.0]),
                        learning_rate=1e-4, weight_decay=1e-5,
                        batch_size=args.batch, steps_per_epoch=steps, max_epochs=3, ckpt_path=f"{tmp}/best.ckpt",
                        history_path=f"{tmp}/history.csv", accelerator="gpu" if args.device == "cuda" else "cpu",
                        devices=1, compile=args.compile, progress=False)
    sec = [r["seconds"] for r in res["history"]]
    epoch_s = sec[-1] - sec[-2]  # a warm epoch: training steps plus painting 2000 validation voxels
    print(json.dumps({"device": torch.cuda.get_device_name() if args.device == "cuda" else "CPU", "mode": "lightning fit", "preset": args.preset,
                      "batch": args.batch, "steps_per_epoch": steps, "epoch_seconds": epoch_s,
                      "samples_per_s_incl_validation": steps * args.batch / epoch_s, "pk": pk_source,
                      "history": res["history"]}, indent=1))


if __name__ == "__main__":
    main()
