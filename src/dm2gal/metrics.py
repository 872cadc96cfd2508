"""`{results}/metrics.json`: scores with uncertainties of every model against the truth,
and a verdict per statistic (docs/scores.md).

Inputs are `stats.summarise` dicts keyed {universe: {'truth' | model: dict}}:
'test' is the training universe's test cube, the other names are held-out
universes. A 'hod' dict carries `realisations` = N draws and every per-field
array with a leading axis of length N (`split_realisations` cuts it).

Statistics and their bins (chosen on the truth of each universe):
P(k) over k in `stats.k_range` [h/Mpc], and split at `stats.k_split` into its large
scales (`pk_large`: k below the split, where the galaxies' clustering bias shows) and
small scales (`pk_small`: the shot noise and one-halo term of the heaviest galaxies);
B over every angle of every triangle;
the PDF (voxel counts) over the bins from `stats.pdf.metric_log10_mass_min`
up that hold at least `stats.pdf.metric_min_voxels` truth voxels; r(k) at `stats.r_at_k`;
the total stellar mass.

Scores of one model field X against the truth T over n bins (pk, bk, pdf):
- `mean_abs_rel_err` = mean |X/T - 1| (kept for continuity; asymmetric);
- `mean_abs_log10` = mean |log10(X/T)|, with X/T floored at `RATIO_FLOOR`
  (a bin of the wrong sign or with no model voxels counts as 2 dex);
- `chi2_dof` = mean (X - T)^2 / Var(X - T), with the Gaussian variance of the
  *difference* of two correlated estimates measured on the same density field,
  Var = s_X^2 + s_T^2 - 2 rho s_X s_T. s are the files' sampling errors
  (P: pk_err = P / sqrt(N_modes); B: B_err = sqrt(V P1 P2 P3 / N_tri)) of the
  model and of the truth, and rho their correlation in the Gaussian limit:
  rho = r(k)^2 for P(k) (Cov of the two estimates = P_x^2 / N_modes), rho =
  r(k1) r(k2) r(k3) for B, with r the model's cross-correlation with the truth.
  PDF bins: Poisson, Var = N_X + N_T (the files hold no joint counts, so the
  correlation is left out: conservative). This is the variance a cosmologist
  defends for "is the model's discrepancy explained by sampling noise": the
  truth's error alone (`chi2_truth_dof`) counts the shared cosmic variance that
  cancels in X - T when r is near 1, and misses the model's own noise when r is
  near 0 (two independent universes score 2, not 1, against the truth's error).
  chi2_dof ~ 1 means consistent within the Gaussian error model.
- `chi2_truth_dof` = mean (X - T)^2 / s_T^2: the truth's own sampling error
  (pk_err, B_err of the truth; Poisson N_T for the PDF), one yardstick for
  every model, so it ranks models; an independent realisation scores about 2.
- `chi2_univ_dof` (held-out universes only, >= 2 of them): mean (X - T)^2 /
  s_u^2, with s_u^2 the scatter of X - T over the held-out universes (and HOD
  draws), bin by bin: the empirical error, non-Gaussian terms included.
r(k) scores |1 - r(k_r)|, the total mass |M / M_T - 1|.

Uncertainty: for each score, the test-cube value; over held-out universes, the
mean and standard deviation; for 'hod', each value is the mean over draws and
`*draw_std` the scatter over draws. The verdict per statistic compares dm2gal
(and 'ideal') with the HOD on `VERDICT_SCORE`; `verdict` documents its error.
"""

from __future__ import annotations

import html
import json
import os

import numpy as np

from .atomic import atomic_path
from .models import CONTENDERS, NAMES
from .stats import split_realisations
from .tables import write_page

MODELS = NAMES
"""Models compared with the truth, in `dm2gal.models.REGISTRY` order (what each is: there)."""

TEST = "test"
"""The universe name of the training universe's test cube."""

STATISTICS = ("pk", "bk", "pdf", "r", "total_mass")
BINNED = ("pk", "bk", "pdf")
PK_SCALES = ("pk_large", "pk_small")
"""P(k) below and above `stats.k_split`: binned statistics too, scored and judged like pk
when the split is configured."""
BIN_SCORES = ("mean_abs_rel_err", "mean_abs_log10", "chi2_dof", "chi2_truth_dof")
SINGLE_SCORE = {"r": "abs_dev", "total_mass": "abs_rel_err"}
"""The one score of the unbinned statistics: |1 - r(k_r)| and |M / M_T - 1|."""
VERDICT_SCORE = "mean_abs_log10"
"""The score the verdicts of pk, bk and pdf compare (symmetric, one weight per bin)."""
RATIO_FLOOR = 1e-2
"""X/T below this (wrong sign, empty model bin) counts as this in mean_abs_log10."""

ERROR_MODEL = {
    "chi2_dof": "Gaussian variance of the difference model - truth on the same density field: "
                "s_X^2 + s_T^2 - 2 rho s_X s_T; s = pk_err = P/sqrt(N_modes) and B_err = "
                "sqrt(V P1 P2 P3 / N_tri) of model and truth; rho = r(k)^2 (P), r(k1) r(k2) r(k3) (B); "
                "PDF: Poisson N_X + N_T. Too small for stellar-mass fields beyond k ~ 0.5 h/Mpc and "
                "for B (non-Gaussian covariance of a few massive haloes): docs/scores.md",
    "chi2_truth_dof": "the truth's sampling error alone: pk_err, B_err of the truth; PDF: Poisson N_T",
    "chi2_univ_dof": "bin-by-bin variance of model - truth over the held-out universes (and HOD draws)",
}
VERDICT_SIGMA = ("D_u = score(hod) - score(model) in universe u, averaged over the HOD draws; "
                 "difference = mean_u D_u; held-out: sigma^2 = max(var_u(D_u) / n_u, "
                 "<var_draws(hod score)> / (n_draws n_u)): universes are the independent replicates "
                 "(their spread holds the cosmic variance of both scores and of the truth), the HOD "
                 "draw scatter is a floor; test cube alone: sigma = draw std / sqrt(n_draws), no "
                 "cosmic variance. significance: n_sigma = difference / sigma converted to a "
                 "Gaussian-equivalent number of standard deviations through Student's t with dof = "
                 "n_u - 1 (or the draws' dof when the floor applies)")


def mean_abs_rel_err(model: np.ndarray, truth: np.ndarray) -> float:
    """mean |model / truth - 1| over the given bins (arrays of equal shape, truth != 0)."""
    model, truth = np.asarray(model, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if truth.size == 0:
        raise ValueError("no bins to compare")
    return float(np.mean(np.abs(model / truth - 1.0)))


def mean_abs_log10(model: np.ndarray, truth: np.ndarray) -> float:
    """mean |log10(model / truth)| over the bins, the ratio floored at `RATIO_FLOOR`."""
    ratio = np.asarray(model, dtype=np.float64) / np.asarray(truth, dtype=np.float64)
    return float(np.mean(np.abs(np.log10(np.maximum(ratio, RATIO_FLOOR)))))


def chi2_dof(model: np.ndarray, truth: np.ndarray, var: np.ndarray) -> float:
    """mean (model - truth)^2 / var; a bin of zero variance and zero difference scores 0."""
    diff2 = (np.asarray(model, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2
    var = np.asarray(var, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(diff2 == 0, 0.0, diff2 / var)
    return float(np.mean(z2))


def bin_masks(truth: dict, cfg: dict) -> dict[str, np.ndarray]:
    """The bins scored in one universe: {'pk': k in k_range, 'pdf': bins >= the metric mass
    holding at least `pdf.metric_min_voxels` truth voxels (1 where unset)} (boolean arrays),
    and with `k_split` in `cfg` 'pk_large' / 'pk_small':
    the k_range bins below / from it; raises naming the config key when one is empty."""
    kmin, kmax = cfg["k_range"]
    in_k = (truth["k"] >= kmin) & (truth["k"] <= kmax)
    if not in_k.any():
        raise ValueError(f"stats.k_range {cfg['k_range']} h/Mpc holds no P(k) bin "
                         f"(bins span {truth['k'][0]:.3g}..{truth['k'][-1]:.3g})")
    lo_edges = truth["pdf_edges"][:-1]
    min_voxels = max(1, int(cfg["pdf"].get("metric_min_voxels", 1)))
    in_m = (lo_edges >= cfg["pdf"]["metric_log10_mass_min"]) & (truth["pdf_counts"] >= min_voxels)
    if not in_m.any():
        raise ValueError(f"no PDF bin above stats.pdf.metric_log10_mass_min holds stats.pdf.metric_min_voxels = "
                         f"{min_voxels} truth voxels")
    out = {"pk": in_k, "pdf": in_m}
    if cfg.get("k_split") is not None:
        split = float(cfg["k_split"])
        out.update(pk_large=in_k & (truth["k"] < split), pk_small=in_k & (truth["k"] >= split))
        if not (out["pk_large"].any() and out["pk_small"].any()):
            raise ValueError(f"stats.k_split {split:g} h/Mpc leaves no P(k) bin of stats.k_range {cfg['k_range']} "
                             f"h/Mpc on one side (bins span {truth['k'][0]:.3g}..{truth['k'][-1]:.3g})")
    return out


def binned_statistics(masks: dict) -> tuple[str, ...]:
    """The binned statistics scored with these masks: pk, its two scales when split, bk, pdf."""
    return ("pk", *(stat for stat in PK_SCALES if stat in masks), "bk", "pdf")


def statistics(masks: dict) -> tuple[str, ...]:
    """Every statistic scored with these masks, binned ones first."""
    return (*binned_statistics(masks), *STATISTICS[len(BINNED):])


def binned(stat: str, s: dict, truth: dict, masks: dict) -> tuple[np.ndarray, ...]:
    """(X, T, Var(X - T), s_T^2) per bin of one binned statistic (see the module docstring)."""
    if stat == "pk" or stat in PK_SCALES:
        m = masks[stat]
        sx, st = s["pk_err"][m], truth["pk_err"][m]
        rho = np.clip(s["r"][m] ** 2, 0.0, 1.0)
        return s["pk"][m], truth["pk"][m], sx**2 + st**2 - 2 * rho * sx * st, st**2
    if stat == "bk":
        k1, k2 = truth["triangles"][:, 0:1], truth["triangles"][:, 1:2]
        r_at = lambda k: np.interp(k, s["k"], s["r"])  # noqa: E731
        rho = np.clip(r_at(k1) * r_at(k2) * r_at(truth["k3"]), -1.0, 1.0)
        sx, st = s["B_err"], truth["B_err"]
        var = sx**2 + st**2 - 2 * rho * sx * st
        return s["B"].ravel(), truth["B"].ravel(), var.ravel(), (st**2).ravel()
    if stat == "pdf":
        m = masks["pdf"]
        x, t = s["pdf_counts"][m].astype(np.float64), truth["pdf_counts"][m].astype(np.float64)
        return x, t, x + t, t
    raise ValueError(f"unknown binned statistic {stat!r}")


def field_scores(s: dict, truth: dict, masks: dict, k_r: float) -> dict[str, dict[str, float]]:
    """{stat: {score: value}} of one model field (one draw) against the truth of its universe."""
    out = {}
    for stat in binned_statistics(masks):
        x, t, var, var_t = binned(stat, s, truth, masks)
        out[stat] = {"mean_abs_rel_err": mean_abs_rel_err(x, t), "mean_abs_log10": mean_abs_log10(x, t),
                     "chi2_dof": chi2_dof(x, t, var), "chi2_truth_dof": chi2_dof(x, t, var_t)}
    out["r"] = {"abs_dev": abs(1.0 - float(np.interp(k_r, s["k"], s["r"])))}
    out["total_mass"] = {"abs_rel_err": abs(s["total_mass"] / truth["total_mass"] - 1.0)}
    return out


def univ_chi2(draws_by_universe: list[list[dict]], truths: list[dict], masks: list[dict]) -> dict:
    """{stat: chi2_univ_dof}: each (universe, draw)'s (X - T)^2 over the bin-by-bin scatter of
    X - T across all of them, averaged; bins common to every universe (PDF: truth voxels in all)
    where that scatter is not zero (identical integer PDF differences leave a bin out)."""
    common = {key: np.logical_and.reduce([m[key] for m in masks]) for key in masks[0]}
    out = {}
    for stat in binned_statistics(common):
        diffs = np.array([x - t for draws, truth in zip(draws_by_universe, truths)
                          for x, t, _, _ in (binned(stat, s, truth, common) for s in draws)])
        if len(diffs) < 2 or diffs.shape[1] == 0:
            continue
        var = np.var(diffs, axis=0, ddof=1)
        spread = var > 0  # a bin whose difference is the same everywhere has no scatter to divide by
        if spread.any():
            out[stat] = float(np.mean([chi2_dof(d[spread], 0.0, var[spread]) for d in diffs]))
    return out


def verdict(a: list[float], hod: list[np.ndarray], basis: str) -> dict:
    """Which of a model (one score per universe, `a`) and the HOD (draw scores per universe)
    is closer to the truth (lower score), with the standard deviation of the difference
    (`VERDICT_SIGMA`): {'winner', 'difference' (hod - model), 'sigma', 'n_sigma' = difference /
    sigma, 'dof', 'significance' (n_sigma as a Gaussian-equivalent number of standard deviations
    through Student's t with dof degrees of freedom), 'basis'}."""
    from scipy import special
    from scipy.stats import t as student_t

    d = np.array([np.mean(h) - x for x, h in zip(a, hod)])
    n_draws = np.array([len(h) for h in hod])
    within = np.mean([np.var(h, ddof=1) / n if n > 1 else 0.0 for h, n in zip(hod, n_draws)]) / len(d)
    between = np.var(d, ddof=1) / len(d) if len(d) > 1 else 0.0
    dof = len(d) - 1 if between >= within else int(np.sum(n_draws - 1))
    sigma = float(np.sqrt(max(between, within)))
    diff = float(np.mean(d))
    out = {"winner": "hod" if diff < 0 else "model", "difference": diff, "sigma": sigma,
           "n_sigma": None, "dof": dof, "significance": None, "basis": basis}
    if sigma > 0 and dof > 0:
        n_sigma = diff / sigma
        z = -special.ndtri_exp(student_t.logsf(abs(n_sigma), dof))
        out.update(n_sigma=n_sigma, significance=float(np.copysign(z, n_sigma)))
    return out


def _summary(values: list[list[float]]) -> dict:
    """Mean over draws per universe -> mean and std over universes, and the mean draw scatter."""
    per_universe = [float(np.mean(v)) for v in values]
    out = {"mean": float(np.mean(per_universe)),
           "std": float(np.std(per_universe, ddof=1)) if len(per_universe) > 1 else 0.0}
    if max(len(v) for v in values) > 1:
        out["draw_std"] = float(np.mean([np.std(v, ddof=1) for v in values]))
    return out


def compute_metrics(stats_by_universe: dict[str, dict[str, dict]], cfg: dict,
                    occupancy: dict | None = None) -> dict:
    """metrics.json's content from {universe: {'truth' | model: summarise dict}}.

    `cfg` holds `k_range`, `r_at_k` and `pdf.metric_log10_mass_min` (the `stats` config
    section or its metric keys); `occupancy` the content of paint's occupancy.json (test-cube
    scores under 'test'), or None to leave them out. The flat keys `<stat>.<model>.<score>`
    are test-cube values (HOD: mean over draws); `scores` and `verdicts` hold the rest.
    """
    k_r = float(cfg["r_at_k"])
    held_out = [u for u in stats_by_universe if u != TEST]
    draws, masks = {}, {}
    for u, group in stats_by_universe.items():
        masks[u] = bin_masks(group["truth"], cfg)
        draws[u] = {m: split_realisations(group[m]) for m in MODELS if m in group}
    scores = {u: {m: [field_scores(s, stats_by_universe[u]["truth"], masks[u], k_r) for s in ds]
                  for m, ds in draws[u].items()} for u in draws}

    out: dict = {}
    if TEST in stats_by_universe:
        out.update(_test_flat_keys(stats_by_universe[TEST], draws[TEST], scores[TEST], masks[TEST],
                                   cfg["k_range"], k_r))
    out["held_out_universes"] = held_out
    out["error_model"] = ERROR_MODEL
    any_masks = next(iter(masks.values()))  # every universe scores the same statistics
    scored = statistics(any_masks)
    out["verdict_score"] = {**{s: VERDICT_SCORE for s in binned_statistics(any_masks)}, **SINGLE_SCORE}
    out["verdict_sigma"] = VERDICT_SIGMA
    out["scores"] = _score_table(scores, draws, stats_by_universe, masks, held_out, scored)
    out["verdicts"] = {}
    for model in CONTENDERS:
        v = _verdicts(scores, model, held_out, scored)
        if v:
            out["verdicts" if model == "dm2gal" else f"verdicts_{model}"] = v
    if occupancy is not None:
        for key in ("precision", "recall", "f1"):
            out[f"occupancy.{key}"] = float(occupancy["test"][key])
        out["occupancy.threshold"] = float(occupancy["threshold"])
    return out


def _score_names(stat: str) -> tuple[str, ...]:
    return (SINGLE_SCORE[stat],) if stat in SINGLE_SCORE else BIN_SCORES


def _score_table(scores, draws, stats_by_universe, masks, held_out, scored) -> dict:
    """{stat: {model: {score: {'test', 'test_draw_std', 'universes': {name: value},
    'universes_mean', 'universes_std', 'universes_draw_std'}}}}, and chi2_univ_dof."""
    table: dict = {}
    models = [m for m in MODELS if any(m in scores[u] for u in scores)]
    for stat in scored:
        for model in models:
            entry = {}
            for name in _score_names(stat):
                e = {}
                if model in scores.get(TEST, {}):
                    s = _summary([[d[stat][name] for d in scores[TEST][model]]])
                    e["test"] = s["mean"]
                    if "draw_std" in s:
                        e["test_draw_std"] = s["draw_std"]
                have = [u for u in held_out if model in scores[u]]
                if have:
                    values = [[d[stat][name] for d in scores[u][model]] for u in have]
                    e["universes"] = {u: float(np.mean(v)) for u, v in zip(have, values)}
                    e.update({f"universes_{k}": v for k, v in _summary(values).items()})
                if e:
                    entry[name] = e
            table.setdefault(stat, {})[model] = entry
        for model in models:
            have = [u for u in held_out if model in draws[u]]
            if len(have) < 2 or stat in SINGLE_SCORE:
                continue
            chi2 = univ_chi2([draws[u][model] for u in have],
                             [stats_by_universe[u]["truth"] for u in have], [masks[u] for u in have])
            if stat in chi2:
                table[stat][model]["chi2_univ_dof"] = {"universes_mean": chi2[stat]}
    return table


def _verdicts(scores, model: str, held_out: list[str], scored) -> dict:
    """{stat: verdict} of `model` against the HOD for each statistic `scored`: on the held-out
    universes holding both, and on the test cube (draws only); the top-level entry is the
    held-out one when it exists."""
    out = {}
    for stat in scored:
        name = SINGLE_SCORE.get(stat, VERDICT_SCORE)
        entry = {"score": name}
        for key, universes, basis in (("test", [TEST], "test cube, HOD draws only"),
                                      ("held_out", held_out, "held-out universes")):
            have = [u for u in universes if u in scores and model in scores[u] and "hod" in scores[u]]
            if not have:
                continue
            a = [float(np.mean([d[stat][name] for d in scores[u][model]])) for u in have]  # mean over draws
            h = [np.array([d[stat][name] for d in scores[u]["hod"]]) for u in have]
            v = verdict(a, h, basis if len(have) > 1 or key == "test" else "one held-out universe, HOD draws only")
            v["winner"] = model if v["winner"] == "model" else "hod"
            entry[key] = v
        if len(entry) > 1:
            entry.update(entry.get("held_out", entry.get("test")))
            out[stat] = entry
    return out


def _test_flat_keys(group: dict, draws: dict, scores: dict, masks: dict, k_range, k_r: float) -> dict:
    """The test-cube keys other code reads: ranges and `<stat>.<model>.<score>` (HOD: draw mean)."""
    truth = group["truth"]
    in_m = masks["pdf"]
    out: dict = {
        "pk.k_range": [float(k) for k in k_range],
        "pk.n_bins": int(masks["pk"].sum()),
        "bk.triangles": np.asarray(truth["triangles"]).tolist(),
        "bk.n_angles": int(len(truth["theta"])),
        "pdf.log10_mass_range": [float(truth["pdf_edges"][:-1][in_m][0]),
                                 float(truth["pdf_edges"][1:][in_m][-1])],
        "pdf.n_bins": int(in_m.sum()),
        "r.k": k_r,
    }
    for model, ds in draws.items():
        for stat in binned_statistics(masks):
            for name in BIN_SCORES:
                out[f"{stat}.{model}.{name}"] = float(np.mean([d[stat][name] for d in scores[model]]))
        out[f"bk.{model}.mean_abs_rel_err_by_triangle"] = [
            float(np.mean([mean_abs_rel_err(s["B"][i], truth["B"][i]) for s in ds]))
            for i in range(len(truth["B"]))]
        out[f"r.{model}.at_k"] = float(np.mean([np.interp(k_r, s["k"], s["r"]) for s in ds]))
        out[f"transfer.{model}.at_k"] = float(np.mean([np.interp(k_r, s["k"], s["transfer"]) for s in ds]))
        out[f"total_mass.{model}.rel_err"] = float(np.mean([s["total_mass"] / truth["total_mass"] - 1.0
                                                            for s in ds]))
    return out


def _cell(entry: dict, key: str) -> str:
    """'mean +- std' of a score entry on the verdict's basis (held-out or test)."""
    if key == "held_out":
        spread = f" &plusmn; {entry['universes_std']:.2g}" if len(entry["universes"]) > 1 else ""
        return f"{entry['universes_mean']:.3g}{spread}"
    spread = entry.get("test_draw_std")
    return f"{entry['test']:.3g}" + (f" &plusmn; {spread:.2g}" if spread is not None else "")


def verdict_table(metrics: dict) -> str:
    """The verdicts as an HTML table, a row per contender (CONTENDERS) and statistic: the score,
    its basis, the model's and the HOD's values (mean +- std over held-out universes, or the
    test-cube value +- the draw scatter), who wins, and the significance (difference / sigma,
    and its Gaussian equivalent)."""
    head = ("model", "statistic", "score", "basis", "model's score", "HOD", "closer to the truth",
            "difference / sigma (dof)", "significance [Gaussian sigma]")
    rows = []
    for model in CONTENDERS:
        for stat, v in metrics.get("verdicts" if model == "dm2gal" else f"verdicts_{model}", {}).items():
            key = "held_out" if "held_out" in v else "test"
            cells = [model, stat, v["score"], v["basis"]]
            for m in (model, "hod"):
                entry = metrics["scores"][stat].get(m, {}).get(v["score"], {})
                ok = "universes_mean" in entry if key == "held_out" else "test" in entry
                cells.append(_cell(entry, key) if ok else "&ndash;")
            n_sigma = "&ndash;" if v["n_sigma"] is None else f"{v['n_sigma']:+.2f} ({v['dof']})"
            sig = "&ndash;" if v["significance"] is None else f"{abs(v['significance']):.1f}"
            cells += [v["winner"], n_sigma, sig]
            rows.append("<tr>" + "".join(f"<td>{c if '&' in str(c) else html.escape(str(c))}</td>"
                                         for c in cells) + "</tr>")
    return ("<table>\n<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
            + f"<p>Lower scores are closer to the truth. sigma: {html.escape(VERDICT_SIGMA)}.</p>\n")


def write_verdict_table(path: str | os.PathLike, metrics: dict) -> None:
    """Write `verdict_table` as a standalone HTML page, atomically (for the Snakemake report)."""
    write_page(path, "dm2gal verdicts", verdict_table(metrics))


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    """Write metrics.json atomically (strict JSON: a NaN or infinity is an error)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
