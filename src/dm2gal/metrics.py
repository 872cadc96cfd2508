"""`{results}/metrics.json`: one number per model and statistic, to compare runs.

Each `<stat>.<model>.mean_abs_rel_err` is the mean over bins of
|X_model / X_truth - 1|: P(k) over the bins with k in `stats.k_range` [h/Mpc],
B over every angle of every triangle in `stats.bk.triangles`, the PDF over the
bins from `stats.pdf.metric_log10_mass_min` up where the truth has voxels.
`r.<model>.at_k` is r(k) interpolated at `stats.r_at_k` [h/Mpc]. The ranges
are recorded beside the numbers, and the occupancy precision and recall of the
painted test cube (and the F1 and subhalo-mass threshold [Msun/h]) are copied
from `{results}/paint/test/occupancy.json`.
"""

from __future__ import annotations

import json
import os

import numpy as np

MODELS = ("dm2gal", "dm2gal_oracle", "hod")
"""Models compared with the truth, in this order (dm2gal_oracle only when painted)."""


def mean_abs_rel_err(model: np.ndarray, truth: np.ndarray) -> float:
    """mean |model / truth - 1| over the given bins (arrays of equal shape, truth != 0)."""
    model, truth = np.asarray(model, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if truth.size == 0:
        raise ValueError("no bins to compare")
    return float(np.mean(np.abs(model / truth - 1.0)))


def compute_metrics(all_stats: dict[str, dict], cfg: dict, occupancy: dict | None = None) -> dict:
    """The metrics dict from the `stats.summarise` outputs of 'truth' and the models present.

    `cfg` is the `stats` config section; `occupancy` the content of paint's
    occupancy.json (test-cube scores under 'test'), or None to leave them out.
    """
    truth = all_stats["truth"]
    kmin, kmax = cfg["k_range"]
    in_k = (truth["k"] >= kmin) & (truth["k"] <= kmax)
    if not in_k.any():
        raise ValueError(f"stats.k_range {cfg['k_range']} h/Mpc holds no P(k) bin "
                         f"(bins span {truth['k'][0]:.3g}..{truth['k'][-1]:.3g})")
    lo_edges = truth["pdf_edges"][:-1]
    in_m = (lo_edges >= cfg["pdf"]["metric_log10_mass_min"]) & (truth["pdf_counts"] > 0)
    if not in_m.any():
        raise ValueError("no PDF bin above stats.pdf.metric_log10_mass_min holds truth voxels")
    k_r = float(cfg["r_at_k"])

    out: dict = {
        "pk.k_range": [float(kmin), float(kmax)],
        "pk.n_bins": int(in_k.sum()),
        "bk.triangles": truth["triangles"].tolist(),
        "bk.n_angles": int(len(truth["theta"])),
        "pdf.log10_mass_range": [float(lo_edges[in_m][0]), float(truth["pdf_edges"][1:][in_m][-1])],
        "pdf.n_bins": int(in_m.sum()),
        "r.k": k_r,
    }
    for model in MODELS:
        s = all_stats.get(model)
        if s is None:
            continue
        out[f"pk.{model}.mean_abs_rel_err"] = mean_abs_rel_err(s["pk"][in_k], truth["pk"][in_k])
        out[f"bk.{model}.mean_abs_rel_err"] = mean_abs_rel_err(s["B"], truth["B"])
        out[f"bk.{model}.mean_abs_rel_err_by_triangle"] = [
            mean_abs_rel_err(b, t) for b, t in zip(s["B"], truth["B"])]
        out[f"pdf.{model}.mean_abs_rel_err"] = mean_abs_rel_err(
            s["pdf_counts"][in_m], truth["pdf_counts"][in_m])
        out[f"r.{model}.at_k"] = float(np.interp(k_r, s["k"], s["r"]))
        out[f"transfer.{model}.at_k"] = float(np.interp(k_r, s["k"], s["transfer"]))
        out[f"total_mass.{model}.rel_err"] = s["total_mass"] / truth["total_mass"] - 1.0
    if occupancy is not None:
        for key in ("precision", "recall", "f1"):
            out[f"occupancy.{key}"] = float(occupancy["test"][key])
        out["occupancy.threshold"] = float(occupancy["threshold"])
    return out


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    """Write metrics.json atomically (strict JSON: a NaN or infinity is an error)."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
