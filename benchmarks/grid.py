"""Grid stage: throughput and peak memory of the slab path against one direct MASL.MA call.

    .venv/bin/python benchmarks/grid.py [--particles-side 128] [--grids 256 512] [--out FILE]
    .venv/bin/python benchmarks/grid.py --only deposit [--counts 1e5 1e6 4e6] [--grids 256 512]

Part 0 (`deposit`) times the slab gridder's deposit (`dm2gal.cic.deposit`) and
MASL.MA side by side in one process: the same float32 particles (clustered, as
below) onto the same whole grid, the two calls interleaved (which goes first
alternates) `--repeats` times, CPU seconds by time.process_time; it prints both
rates (median over the repeats), their ratio per particle count (the median of
the ratios of the adjacent pairs of calls), and the largest difference of the two
fields relative to the field maximum.

Part 1 writes 128^3 clustered particles in TNG layout (2 snapshot chunks); for each
grid size it runs, each job in a fresh subprocess:
  * `ma`: one MASL.MA call on all particles already in memory (the reference engine),
  * `box`: the whole-box path (read chunks, MA per chunk, write Zarr),
  * the slab path with the configured slab thickness: every scatter and gather job
    and the assemble job.
Part 2 runs single jobs at TNG100-1-Dark scale (1820^3 particles in 448 chunks
onto 2048^3, 16 slabs of 128 planes): a scatter job on one 13.5M-particle chunk
whose particles all fall in slab 0 (TNG chunks are ordered by halo, so a chunk is
spatially compact: the worst case for a bucket), the gather job of that slab
(2 GiB float32), and the Zarr write of a dense slab. From these it extrapolates
per-job memory and total core-hours.

Times are CPU seconds of the job process (user + system; the dev box is shared,
so wall times are noisier); peak memory is the job's ru_maxrss (what SLURM
accounts: /proc/self/status VmHWM, as ru_maxrss would inherit the launcher's peak
across fork+exec), `heap` the numpy/Python allocation peak from tracemalloc.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

BOX = 75.0
SNAP = 99
M_DM = 6.0e8
TNG = dict(particles=1820 ** 3, chunks=448, n_grid=2048, box=75.0)
HEADER = dict(BoxSize=BOX, MassTable=np.array([0, M_DM, 0, 0, 0, 0]), Omega0=0.3089, OmegaLambda=0.6911,
              HubbleParam=0.6774, Redshift=0.0, Time=1.0)


def _usage() -> tuple[float, float]:
    """(CPU seconds, peak resident MB) of this process.

    The peak is /proc/self/status VmHWM, the high-water mark of this process
    image: ru_maxrss would inherit the launching process's peak across fork+exec.
    """
    r = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return r.ru_utime + r.ru_stime, int(hwm.split()[1]) / 1024


def job(step: str, args: dict) -> dict:
    """Run one job in this process; report CPU and wall seconds, peak RSS and heap [MB]."""
    import h5py
    import MAS_library as MASL
    import zarr

    from dm2gal import tng
    from dm2gal.cic import deposit, wrap_positions
    from dm2gal.grid import FieldSource, SlabPlan, assemble, build_box, gather, scatter

    source = FieldSource("dark", args.get("base", ""), SNAP, "dm_mass")
    plan = SlabPlan(args["n_grid"], args["thickness"], args["chunk"]) if "thickness" in args else None
    if step == "deposit":
        with h5py.File(args["buckets"][0], "r") as f:
            pos, mass = f["slab_0/pos"][()], f["slab_0/mass"][()]
        slab = np.zeros((plan.thickness, plan.n_grid, plan.n_grid), dtype=np.float32)
        slab[...] = 0  # touch the pages outside the timing
    if step == "ma":
        pos, mass = zip(*(tng.read_particle_chunk(args["base"], SNAP, c) for c in range(source.n_chunks())))
        pos, mass = wrap_positions(np.concatenate(pos), BOX), np.concatenate(mass).astype(np.float32)
    _, baseline = _usage()
    tracemalloc.start()
    cpu0, wall0 = _usage()[0], time.perf_counter()
    if step == "ma":
        grid = np.zeros((args["n_grid"],) * 3, dtype=np.float32)
        MASL.MA(pos, grid, BOX, MAS="CIC", W=mass, verbose=False)
    elif step == "box":
        build_box(source, args["n_grid"], args["out"])
    elif step == "scatter":
        scatter(source, args["chunk_index"], plan, args["out"])
    elif step == "gather":
        gather(args["buckets"], args["slab"], plan, args["out"])
    elif step == "deposit":
        deposit(slab, pos, mass, TNG["box"])
    elif step == "assemble":
        assemble(args["slabs"], source, plan, args["out"])
    elif step == "write":  # a dense slab (incompressible float32 mantissas, like a real field)
        rng = np.random.default_rng(0)
        data = np.empty((plan.thickness, plan.n_grid, plan.n_grid), dtype=np.float32)
        for plane in data:
            plane[...] = rng.lognormal(20, 2, plane.shape)
        cpu0, wall0 = _usage()[0], time.perf_counter()
        arr = zarr.create_array(store=args["out"], shape=data.shape, chunks=(plan.chunk,) * 3, dtype="float32",
                                fill_value=0)
        arr[...] = data
    cpu, peak = _usage()
    heap = tracemalloc.get_traced_memory()[1] / 2 ** 20
    return dict(step=step, cpu_s=cpu - cpu0, wall_s=time.perf_counter() - wall0, peak_mb=peak,
                baseline_mb=baseline, heap_mb=heap)


def run_job(step: str, **args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--job", step, json.dumps(args, default=str)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark job {step} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def clustered(rng, n: int, lo: np.ndarray, hi: np.ndarray, n_blobs: int = 2000, sigma: float = 0.3) -> np.ndarray:
    """Half the particles in Gaussian blobs, half uniform, inside the box [lo, hi) [Mpc/h]."""
    centres = lo + rng.random((n_blobs, 3)) * (hi - lo)
    half = n // 2
    pos = np.concatenate([centres[rng.integers(0, n_blobs, half)] + rng.normal(0, sigma, (half, 3)),
                          lo + rng.random((n - half, 3)) * (hi - lo)])
    return lo + np.mod(pos - lo, hi - lo)


def side_by_side(counts: list[int], grids: list[int], repeats: int) -> list[dict]:
    """`deposit` against MASL.MA on the same particles and grid, interleaved in this process (CPU seconds)."""
    import MAS_library as MASL

    from dm2gal.cic import deposit

    rng = np.random.default_rng(3)
    warm = np.zeros((8, 8, 8), np.float32)  # compile / load the deposit kernel outside the timing
    cpu0 = time.process_time()
    deposit(warm, np.zeros((1, 3), np.float32), np.ones(1, np.float32), BOX)
    first_call_s = time.process_time() - cpu0
    rows = []
    for n_grid in grids:
        ours, ref = (np.zeros((n_grid,) * 3, np.float32) for _ in range(2))
        for m in counts:
            pos = clustered(rng, m, np.zeros(3), np.full(3, BOX)).astype(np.float32)
            pos[pos >= BOX] = 0  # float32 rounding up to BoxSize: MA needs [0, BoxSize)
            mass = np.full(m, M_DM, np.float32) * rng.uniform(0.5, 1.5, m).astype(np.float32)
            t_ma, t_ours = [], []
            for r in range(repeats):
                for name in (("ma", "ours") if r % 2 == 0 else ("ours", "ma")):
                    grid = ref if name == "ma" else ours
                    grid[...] = 0
                    cpu0 = time.process_time()
                    if name == "ma":
                        MASL.MA(pos, grid, BOX, MAS="CIC", W=mass, verbose=False)
                        t_ma.append(time.process_time() - cpu0)
                    else:
                        deposit(grid, pos, mass, BOX)
                        t_ours.append(time.process_time() - cpu0)
            rate_ma, rate_ours = m / float(np.median(t_ma)), m / float(np.median(t_ours))
            # ratio: median over the repeats of each adjacent pair's ratio (load drift on the shared box cancels)
            ratio = float(np.median(np.array(t_ma) / np.array(t_ours)))
            rows.append(dict(n_grid=n_grid, particles=m, repeats=repeats, cpu_s_ma=t_ma, cpu_s_deposit=t_ours,
                             rate_ma=rate_ma, rate_deposit=rate_ours, ratio=ratio,
                             max_diff_rel=float(np.abs(ours - ref).max() / ref.max())))
        del ours, ref
    for row in rows:
        row["first_call_s"] = first_call_s
    return rows


def print_side_by_side(rows: list[dict]) -> None:
    print(f"deposit vs MASL.MA, same process, interleaved, medians of {rows[0]['repeats']} pairs "
          f"(M particles per CPU second; first deposit call {rows[0]['first_call_s']:.2f} CPU s, not timed):")
    print(f"{'grid':>6} {'particles':>10} {'MA':>8} {'deposit':>8} {'ratio':>6} {'max|diff|/max':>14}")
    for r in rows:
        print(f"{r['n_grid']:>5}^3 {r['particles']:>10.3g} {r['rate_ma'] / 1e6:>8.2f} {r['rate_deposit'] / 1e6:>8.2f} "
              f"{r['ratio']:>6.2f} {r['max_diff_rel']:>14.1e}")


def write_particles(base: Path, pos: np.ndarray, n_chunks: int) -> None:
    from dm2gal import tng

    tng.write_snapshot(base, SNAP, HEADER, {1: {"Coordinates": pos,
                                               "ParticleIDs": np.arange(len(pos), dtype=np.uint64)}}, n_chunks)


def bench_grid(base: Path, work: Path, n_grid: int, thickness: int, chunk: int, n_particles: int,
               n_chunks: int) -> dict:
    from dm2gal.grid import SlabPlan

    plan = SlabPlan.from_config(n_grid, thickness, chunk)
    ma = run_job("ma", base=base, n_grid=n_grid)
    box = run_job("box", base=base, n_grid=n_grid, out=work / f"box_{n_grid}.zarr")
    common = dict(base=base, n_grid=n_grid, thickness=plan.thickness, chunk=plan.chunk)
    buckets = [work / f"scatter_{n_grid}_{c}.h5" for c in range(n_chunks)]
    scatters = [run_job("scatter", chunk_index=c, out=b, **common) for c, b in enumerate(buckets)]
    slabs = [work / f"slab_{n_grid}_{s}.zarr" for s in range(plan.n_slabs)]
    gathers = [run_job("gather", buckets=buckets, slab=s, out=p, **common) for s, p in enumerate(slabs)]
    final = run_job("assemble", slabs=slabs, out=work / f"slabs_{n_grid}.zarr", **common)
    cpu = sum(j["cpu_s"] for j in scatters + gathers) + final["cpu_s"]
    return dict(n_grid=n_grid, n_slabs=plan.n_slabs, thickness=plan.thickness, particles=n_particles,
                ma=ma, box=box, scatter=scatters, gather=gathers, assemble=final,
                rate_ma=n_particles / ma["cpu_s"], rate_box=n_particles / box["cpu_s"],
                rate_slab=n_particles / cpu)


def probe_tng(work: Path, thickness: int, chunk: int) -> dict:
    """Single jobs at TNG100-1-Dark scale; extrapolate per-job memory and core-hours."""
    from dm2gal.grid import SlabPlan, memory_mb

    n = TNG["n_grid"]
    plan = SlabPlan.from_config(n, thickness, chunk)
    per_chunk = int(round(TNG["particles"] / TNG["chunks"]))
    width = plan.thickness * BOX / n  # slab 0's extent in x [Mpc/h]
    pos = clustered(np.random.default_rng(1), per_chunk, np.array([0.0, 0, 0]), np.array([width, BOX, BOX]),
                    n_blobs=50)
    base = work / "tng_probe" / "output"
    write_particles(base, pos, 1)
    del pos
    common = dict(base=base, n_grid=n, thickness=plan.thickness, chunk=plan.chunk)
    sc = run_job("scatter", chunk_index=0, out=work / "probe_scatter.h5", **common)
    ga = run_job("gather", buckets=[work / "probe_scatter.h5"], slab=0, out=work / "probe_slab.zarr", **common)
    de = run_job("deposit", buckets=[work / "probe_scatter.h5"], **common)
    wr = run_job("write", out=str(work / "probe_dense.zarr"), **common)
    slab_particles = TNG["particles"] * (plan.thickness + 1) / n
    rate_deposit = per_chunk / de["cpu_s"]
    gather_s = slab_particles / rate_deposit + wr["cpu_s"]
    return dict(
        n_slabs=plan.n_slabs, thickness=plan.thickness, particles_per_chunk=per_chunk,
        scatter=sc, gather=ga, deposit=de, write_dense=wr, deposit_rate=rate_deposit,
        scatter_job_s=sc["cpu_s"], gather_job_s=gather_s,
        scatter_mem_mb_declared=memory_mb("scatter", n, plan.thickness, 2 * per_chunk),
        gather_mem_mb_declared=memory_mb("gather", n, plan.thickness, 2 * per_chunk),
        core_hours=(TNG["chunks"] * sc["cpu_s"] + plan.n_slabs * gather_s) / 3600,
        wall_hours_all_parallel=(sc["cpu_s"] + gather_s) / 3600,
        box_grid_gib=4 * n ** 3 / 2 ** 30,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", nargs=2, metavar=("STEP", "ARGS"), help=argparse.SUPPRESS)
    parser.add_argument("--particles-side", type=int, default=128)
    parser.add_argument("--grids", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--chunks", type=int, default=2, help="snapshot chunk files in part 1")
    parser.add_argument("--thickness", type=int, default=128, help="slab thickness (config grid.slab_thickness)")
    parser.add_argument("--chunk", type=int, default=128, help="Zarr chunk edge (config grid.chunk)")
    parser.add_argument("--no-tng", action="store_true", help="skip part 2 (needs ~3 GB of memory)")
    parser.add_argument("--counts", type=float, nargs="+", default=[1e5, 1e6, 4e6],
                        help="particle counts of part 0 (deposit vs MA side by side)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats of part 0")
    parser.add_argument("--only", choices=["deposit"], help="run part 0 alone")
    parser.add_argument("--out", default="results/benchmarks/grid.json")
    args = parser.parse_args()
    if args.job:
        print(json.dumps(job(args.job[0], json.loads(args.job[1]))))
        return
    deposit_rows = side_by_side([int(c) for c in args.counts], args.grids, args.repeats)
    print_side_by_side(deposit_rows)
    if args.only == "deposit":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(dict(machine="2-core CPU dev box (shared)", deposit=deposit_rows),
                                             indent=1))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = args.particles_side ** 3
        write_particles(tmp / "output", clustered(np.random.default_rng(0), n, np.zeros(3), np.full(3, BOX)),
                        args.chunks)
        results = [bench_grid(tmp / "output", tmp, g, args.thickness, args.chunk, n, args.chunks)
                   for g in args.grids]
        tng = None if args.no_tng else probe_tng(tmp, args.thickness, args.chunk)
    report = dict(machine="2-core CPU dev box (shared)", deposit=deposit_rows, results=results, tng100_dark=tng)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    for r in results:
        print(f"{r['particles']:.3g} particles -> {r['n_grid']}^3 ({r['n_slabs']} slabs), particles per CPU second: "
              f"one MA call {r['rate_ma'] / 1e6:.2f} M/s, box path {r['rate_box'] / 1e6:.2f} M/s, "
              f"slab path {r['rate_slab'] / 1e6:.2f} M/s (all jobs summed); peak RSS MB: "
              f"MA {r['ma']['peak_mb']:.0f}, box {r['box']['peak_mb']:.0f}, "
              f"scatter {max(j['peak_mb'] for j in r['scatter']):.0f}, "
              f"gather {max(j['peak_mb'] for j in r['gather']):.0f}, assemble {r['assemble']['peak_mb']:.0f}")
    if tng:
        print(f"TNG100-1-Dark (1820^3 -> 2048^3, 448 chunks, {tng['n_slabs']} slabs of {tng['thickness']}): "
              f"scatter job {tng['scatter']['peak_mb']:.0f} MB peak (declared {tng['scatter_mem_mb_declared']}), "
              f"{tng['scatter_job_s']:.1f} CPU s; gather job {tng['gather']['peak_mb']:.0f} MB peak with a "
              f"whole chunk in its bucket (declared {tng['gather_mem_mb_declared']}), "
              f"deposit {tng['deposit_rate'] / 1e6:.2f} M particles/s, {tng['gather_job_s'] / 60:.1f} CPU min for its "
              f"{TNG['particles'] * (tng['thickness'] + 1) / TNG['n_grid']:.3g} particles + dense write "
              f"{tng['write_dense']['cpu_s']:.0f} s; total {tng['core_hours']:.1f} core-hours, "
              f"{tng['wall_hours_all_parallel']:.2f} h wall with all jobs in parallel "
              f"(the whole-box grid alone would be {tng['box_grid_gib']:.0f} GiB)")


if __name__ == "__main__":
    main()
