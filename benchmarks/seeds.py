"""dm2gal against the HOD over several mini-universes: the whole pipeline once per seed.

Runs `snakemake all` with `seed=S` (the mini-universe, training and HOD seeds all follow
it) for each seed given, each in its own results and data folder under OUT, then
prints from each metrics.json a row for the test cube and one for the mean over the held-out
universes (mean |log10(X/T)| of P(k), B and the PDF, |r(k) - 1| at stats.r_at_k, |total
painted stellar mass / true - 1|, P(k) below and above stats.k_split, for dm2gal and the HOD,
and who wins P, B and the two scales of P by the pipeline's verdicts), then the mean and
standard deviation over seeds, then the differences from the HOD paired by seed (mean +- std
over seeds, and the seeds where dm2gal is closer; --hod-from takes the HOD of other seed
folders, e.g. one fitted on more training boxes). Usage (from the repository root):

    python benchmarks/seeds.py OUT 1234 2000 3000 4000 5000 [--cores 2] [--config key=value ...] [--table-only]
        [--hod-from OTHER_OUT]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = [("pk", "mean_abs_log10", "dm2gal"), ("pk", "mean_abs_log10", "hod"),
           ("bk", "mean_abs_log10", "dm2gal"), ("bk", "mean_abs_log10", "hod"),
           ("pdf", "mean_abs_log10", "dm2gal_realisations"), ("pdf", "mean_abs_log10", "hod"),
           ("r", "abs_dev", "dm2gal"), ("r", "abs_dev", "hod"),
           ("total_mass", "abs_rel_err", "dm2gal"), ("total_mass", "abs_rel_err", "hod"),
           ("pk", "mean_abs_log10", "dm2gal_realisations"), ("bk", "mean_abs_log10", "dm2gal_realisations"),
           ("pk", "mean_abs_log10", "ideal"), ("bk", "mean_abs_log10", "ideal"),
           ("pk", "mean_abs_log10", "ideal_realisations"), ("bk", "mean_abs_log10", "ideal_realisations"),
           *((f"pk_{scale}", "mean_abs_log10", m) for scale in ("large", "small")
             for m in ("dm2gal", "dm2gal_realisations", "hod"))]
"""(statistic, score, model) of each column: the scores of metrics.json (the HOD's and the
realisations' are means over their draws); the PDF is dm2gal's realisations' (the mean field
has no scatter by design); the ideal mean (the generator's noise-free mean) is the floor of a
mean painter, the ideal realisations (the generator redrawn) that of the drawn ones."""
REGIONS = ("test", "universes_mean")
JUDGED = ("pk", "bk", "pk_large", "pk_small")
"""The statistics whose verdict winners the table counts: P(k), B, and P(k) below and above stats.k_split."""


def run_seed(out: Path, seed: int, cores: int, extra: list[str]) -> tuple[dict, float]:
    folder = out / f"seed{seed}"
    t0 = time.time()
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores), "all", "--config",
           f"seed={seed}", f"results_dir={folder}/results", f"data_dir={folder}/data", *extra]
    with open(folder.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads((folder / "results" / "metrics.json").read_text()), time.time() - t0


def table(metrics: dict[int, dict]) -> str:
    """A markdown table: a row per seed and region (the test cube; the mean over the held-out
    universes), a column per COLUMNS entry, the verdict winners of the JUDGED statistics for the
    mean field and the realisations, and the mean and standard deviation over seeds of each region."""
    judged = ", ".join(JUDGED)
    head = ("seed | region | " + " | ".join(f"{s} {m}" for s, _, m in COLUMNS)
            + f" | winner {judged} | realisations: winner {judged}")
    lines = [head, "|".join(["---"] * (len(COLUMNS) + 4))]
    values = {(r, c): [] for r in REGIONS for c in COLUMNS}
    wins = {r: [0] * len(JUDGED) for r in REGIONS}
    drawn_wins = {r: [0] * len(JUDGED) for r in REGIONS}
    for seed, m in metrics.items():
        for region in REGIONS:
            row = []
            for c in COLUMNS:
                v = m["scores"][c[0]][c[2]][c[1]][region]
                values[region, c].append(v)
                row.append(f"{v:.3f}")
            basis = "test" if region == "test" else "held_out"
            winner = [m["verdicts"][s][basis]["winner"] for s in JUDGED]
            drawn = [m["verdicts_dm2gal_realisations"][s][basis]["winner"] for s in JUDGED]
            wins[region] = [w + (x == "dm2gal") for w, x in zip(wins[region], winner)]
            drawn_wins[region] = [w + (x == "dm2gal_realisations") for w, x in zip(drawn_wins[region], drawn)]
            lines.append(f"{seed} | {region} | " + " | ".join(row) + f" | {', '.join(winner)} | {', '.join(drawn)}")
    for region in REGIONS:
        cells = [f"{np.mean(values[region, c]):.3f} +- {np.std(values[region, c], ddof=1) if len(metrics) > 1 else 0:.3f}"
                 for c in COLUMNS]
        counts = lambda won: ", ".join(f"{s} {w}/{len(metrics)}" for s, w in zip(JUDGED, won))  # noqa: E731
        lines.append(f"mean +- std | {region} | " + " | ".join(cells)
                     + f" | dm2gal wins {counts(wins[region])} | {counts(drawn_wins[region])}")
    return "\n".join(lines)


def paired(metrics: dict[int, dict], hod: dict[int, dict]) -> str:
    """Per region, model (the mean field, the realisations) and JUDGED statistic: the mean and
    standard deviation over seeds (ddof 1) of the paired difference model - HOD of mean
    |log10(X/T)|, and the seeds where the model is closer; the HOD's scores come from `hod`."""
    lines = ["region | model | " + " | ".join(f"{s}: model - HOD (closer)" for s in JUDGED),
             "|".join(["---"] * (len(JUDGED) + 2))]
    for region in REGIONS:
        for model in ("dm2gal", "dm2gal_realisations"):
            cells = []
            for stat in JUDGED:
                if any(stat not in m["scores"] for m in (*metrics.values(), *hod.values())):
                    cells.append("n/a")  # metrics.json from before stats.k_split
                    continue
                d = np.array([metrics[s]["scores"][stat][model]["mean_abs_log10"][region]
                              - hod[s]["scores"][stat]["hod"]["mean_abs_log10"][region] for s in metrics])
                spread = np.std(d, ddof=1) if len(d) > 1 else 0.0
                cells.append(f"{d.mean():+.3f} +- {spread:.3f} ({int((d < 0).sum())}/{len(d)})")
            lines.append(f"{region} | {model} | " + " | ".join(cells))
    return "\n".join(lines)


def read_metrics(out: Path, seeds: list[int]) -> dict[int, dict]:
    """The metrics.json of OUT/seedS/results for each seed."""
    return {seed: json.loads((out / f"seed{seed}" / "results" / "metrics.json").read_text()) for seed in seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", nargs="*", default=[], help="extra snakemake --config key=value pairs")
    ap.add_argument("--table-only", action="store_true", help="tabulate the seeds' existing metrics.json")
    ap.add_argument("--hod-from", type=Path,
                    help="pair with the HOD of these seed folders instead (e.g. one fitted on more boxes)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        metrics = read_metrics(args.out, args.seeds)
    else:
        metrics = {}
        for seed in args.seeds:
            metrics[seed], seconds = run_seed(args.out, seed, args.cores, args.config)
            print(f"seed {seed}: {seconds:.0f} s", flush=True)
    hod = read_metrics(args.hod_from, args.seeds) if args.hod_from else metrics
    text = table(metrics) + "\n\n" + paired(metrics, hod)
    print(text)
    (args.out / "seeds.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
