"""dm2gal against the HOD over several mini-universes: the whole pipeline once per seed.

Runs `snakemake all` with `seed=S` (the mini-universe, training and HOD seeds all follow
it) for each seed given, each in its own results and data folder under OUT, then
prints one table row per seed from its metrics.json (P(k), B and PDF mean abs rel err,
r(k) at stats.r_at_k, total painted stellar mass error, for dm2gal and the HOD) and the
mean and standard deviation over seeds. Usage (from the repository root):

    python benchmarks/seeds.py OUT 1234 1 2 3 4 [--cores 2] [--config key=value ...]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = [("pk", "mean_abs_rel_err"), ("bk", "mean_abs_rel_err"), ("pdf", "mean_abs_rel_err"), ("r", "at_k"),
           ("total_mass", "rel_err")]


def run_seed(out: Path, seed: int, cores: int, extra: list[str]) -> tuple[dict, float]:
    folder = out / f"seed{seed}"
    t0 = time.time()
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores), "all", "--config",
           f"seed={seed}", f"results_dir={folder}/results", f"data_dir={folder}/data", *extra]
    with open(folder.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads((folder / "results" / "metrics.json").read_text()), time.time() - t0


def table(metrics: dict[int, dict], models=("dm2gal", "hod")) -> str:
    head = "seed | " + " | ".join(f"{s} {m}" for s, _ in COLUMNS for m in models) + " | dm2gal wins P, B"
    lines = [head, "|".join(["---"] * (len(COLUMNS) * len(models) + 2))]
    values = {f"{s}.{m}": [] for s, _ in COLUMNS for m in models}
    for seed, m in metrics.items():
        row = []
        for s, key in COLUMNS:
            for model in models:
                v = m[f"{s}.{model}.{key}"]
                values[f"{s}.{model}"].append(v)
                row.append(f"{v:+.3f}" if s == "total_mass" else f"{v:.3f}")
        wins = [m[f"{s}.dm2gal.mean_abs_rel_err"] < m[f"{s}.hod.mean_abs_rel_err"] for s in ("pk", "bk")]
        lines.append(f"{seed} | " + " | ".join(row) + f" | {'yes' if wins[0] else 'no'}, {'yes' if wins[1] else 'no'}")
    lines.append("mean +- std | " + " | ".join(
        f"{np.mean(values[f'{s}.{m}']):.3f} +- {np.std(values[f'{s}.{m}'], ddof=1) if len(metrics) > 1 else 0:.3f}"
        for s, _ in COLUMNS for m in models) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", nargs="*", default=[], help="extra snakemake --config key=value pairs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for seed in args.seeds:
        metrics[seed], seconds = run_seed(args.out, seed, args.cores, args.config)
        print(f"seed {seed}: {seconds:.0f} s", flush=True)
    text = table(metrics)
    print(text)
    (args.out / "seeds.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
