"""The paper's Figure 1 and one figure per statistic, as PNG and PDF (matplotlib, Agg backend).

Inputs are `stats.summarise` dicts keyed {universe: {'truth' | model: dict}} ('test' is
the test cube, other names held-out universes; a 'hod' dict holds its draws on a
leading axis, `stats.split_realisations`), and for Figure 1 five projected maps of
a cubic region of the test cube. Colours follow the paper: truth blue, dm2gal red,
HOD green; the oracle painting is drawn dashed and always labelled 'dm2gal (oracle
positions)', the 'ideal' painter (noise-free mean) dotted black as the reference.

Each statistic figure has a column for the test cube and, when there are held-out
universes, one for them; each column a ratio-to-truth panel. Lines are means over
the instances (HOD draws; universes, and draws), bands +-1 standard deviation over
them: on the test cube the HOD's scatter over draws, on the held-out universes
dm2gal's and the HOD's spread over universes (ratios taken universe by universe);
the grey band is the truth's Gaussian (P, B) or Poisson (PDF) sampling error. Ratio
axes are logarithmic with limits from the data (linear where a ratio changes sign).
P(k), r(k) and T(k) are drawn up to the cube's Nyquist frequency.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.ticker import FixedLocator, FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from .metrics import MODELS, TEST  # noqa: E402
from .models import BANDED, REGISTRY  # noqa: E402
from .stats import split_realisations  # noqa: E402

log = logging.getLogger(__name__)

STYLE = {"truth": dict(color="tab:blue", label="hydro (truth)", ls="-", lw=2.2),
         **{m.name: dict(m.style, label=m.label) for m in REGISTRY}}
ORDER = ("truth",) + MODELS
MAPS = (("dm", "dark matter", "gravity-only"), ("subhalos", "subhalos", "gravity-only"),
        ("dm2gal", "dm2gal", "stellar mass"), ("truth", "hydro", "stellar mass"),
        ("hod", "HOD", "stellar mass"))
"""Figure 1's top row: (key, title, what the map shows)."""

K_LABEL = r"$k\ [h\,\mathrm{Mpc}^{-1}]$"
PK_LABEL = r"$P(k)\ [(h^{-1}\mathrm{Mpc})^3]$"
BK_LABEL = r"$B(k_1, k_2, \theta)\ [(h^{-1}\mathrm{Mpc})^6]$"
THETA_LABEL = r"$\theta\ [\mathrm{rad}]$"
MSTAR_LABEL = r"$M_*\ [h^{-1}M_\odot]$ per voxel"
PDF_LABEL = "number of voxels"
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1e3, 1e4)
"""Labelled values of a logarithmic ratio axis (those within its limits, thinned to about 7)."""


@dataclass(frozen=True)
class Spec:
    """How one statistic is drawn: y(s) the values of a summarise dict, x(truth) and keep(truth)
    the abscissa and the bins drawn, err(truth) the truth's sampling error (or None)."""
    y: Callable[[dict], np.ndarray]
    x: Callable[[dict], np.ndarray]
    keep: Callable[[dict], np.ndarray]
    err: Callable[[dict], np.ndarray] | None
    xlabel: str
    ylabel: str
    ratio_label: str
    k_axis: bool = True
    log_x: bool = True
    steps: bool = False


def _below_nyquist(s: dict) -> np.ndarray:
    """The k bins at or below the cube's Nyquist frequency (shells beyond it are incomplete)."""
    return s["k"] <= np.pi * s["n_grid"] / s["box_size"]


def _pdf_centres(t: dict) -> np.ndarray:
    edges = 10.0 ** t["pdf_edges"]
    return np.sqrt(edges[1:] * edges[:-1])


PK = Spec(lambda s: s["pk"], lambda t: t["k"], _below_nyquist, lambda t: t["pk_err"],
          K_LABEL, PK_LABEL, r"$P / P_\mathrm{truth}$")
PDF = Spec(lambda s: np.asarray(s["pdf_counts"], dtype=float), _pdf_centres,
           lambda t: np.asarray(t["pdf_counts"]) > 0, lambda t: np.sqrt(t["pdf_counts"]),
           MSTAR_LABEL, PDF_LABEL, r"$N / N_\mathrm{truth}$", k_axis=False, steps=True)


def bk_spec(i: int) -> Spec:
    """Triangle i of the bispectrum against theta."""
    return Spec(lambda s: s["B"][i], lambda t: t["theta"], lambda t: np.ones(len(t["theta"]), bool),
                lambda t: t["B_err"][i], THETA_LABEL, BK_LABEL, r"$B / B_\mathrm{truth}$", log_x=False)


def save(fig, stem: str | os.PathLike, dpi: int = 150) -> list[str]:
    """Write `stem`.png and `stem`.pdf atomically; closes the figure; returns the paths."""
    from .atomic import atomic_path

    paths = []
    for ext in ("png", "pdf"):
        path = f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def columns(stats_by_universe: dict[str, dict]) -> list[tuple[str, dict[str, dict]]]:
    """The figure columns: ('test cube', {'test': group}) and, when there are held-out universes,
    ('held-out universes (n)', {name: group})."""
    held = {u: g for u, g in stats_by_universe.items() if u != TEST}
    cols = [("test cube", {TEST: stats_by_universe[TEST]})] if TEST in stats_by_universe else []
    if held:
        cols.append((f"held-out universes ({len(held)})", held))
    return cols


def instances(groups: dict[str, dict], model: str, spec: Spec, ratio: bool) -> np.ndarray | None:
    """(n_instances, n_bins) values (or ratios to each universe's truth) of `model` over the
    universes of a column and the HOD draws, on the bins `spec.keep` of the first truth."""
    rows = []
    for group in groups.values():
        if model not in group:
            continue
        t = group["truth"]
        keep = spec.keep(next(iter(groups.values()))["truth"])
        for s in split_realisations(group[model]):
            y = spec.y(s)[keep]
            if ratio:
                with np.errstate(divide="ignore", invalid="ignore"):
                    y = y / spec.y(t)[keep]
            rows.append(y)
    return np.array(rows) if rows else None


def _models(groups: dict) -> list[str]:
    return [m for m in ORDER if any(m in g for g in groups.values())]


def _log_x(ax, k_axis: bool = True):
    """Log axis: k labelled at 1, 2, 5 x 10^n in plain numbers; M* at the decades only."""
    ax.set_xscale("log")
    if k_axis:
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _draw(ax, x, rows: np.ndarray, model: str, steps: bool, band: bool, marker=None):
    """The mean of the rows as the model's line; with `band`, +-1 std over the rows shaded."""
    st = STYLE[model]
    mean = np.nanmean(rows, axis=0)
    kw = dict(drawstyle="steps-mid") if steps else {}
    ax.plot(x, mean, **st, marker=marker, ms=3, **kw)
    if band and len(rows) > 1:
        with warnings.catch_warnings():  # a bin finite in one instance only has no spread
            warnings.simplefilter("ignore", RuntimeWarning)
            sd = np.nanstd(rows, axis=0, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=st["color"], alpha=0.2, lw=0,
                        step="mid" if steps else None)
        return [mean - sd, mean + sd]
    return [mean]


def _scale(ax, arrays, log_ok: bool, floor: float | None = None):
    """Log axis when every finite value is positive (and `log_ok`), limits from the data;
    otherwise symmetric-log (B can change sign)."""
    vals = np.concatenate([np.ravel(a) for a in arrays])
    vals = vals[np.isfinite(vals)]
    if floor is not None:
        vals = vals[vals >= floor]
    if vals.size == 0:
        return
    if log_ok and np.all(vals > 0):
        ax.set_yscale("log")
        lo, hi = vals.min(), vals.max()
        pad = (hi / lo) ** 0.05
        ax.set_ylim(lo / pad, hi * pad)
    else:
        ax.set_yscale("symlog", linthresh=np.max(np.abs(vals)) * 1e-3)


def _ratio_scale(ax, arrays):
    """Ratio axis: logarithmic with limits from the data (and 1/1.5..1.5 at least) when every
    ratio is positive, linear with limits from the data otherwise; every model stays visible."""
    vals = np.concatenate([np.ravel(a) for a in arrays])
    vals = vals[np.isfinite(vals)]
    if vals.size and np.all(vals > 0):
        lo, hi = min(vals.min(), 1 / 1.5), max(vals.max(), 1.5)
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.1, hi * 1.1)
        ticks = [t for t in RATIO_TICKS if lo / 1.1 <= t <= hi * 1.1]
        ax.yaxis.set_major_locator(FixedLocator(ticks[:: 1 + len(ticks) // 7]))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif vals.size:
        lo, hi = min(vals.min(), 0.5), max(vals.max(), 1.5)
        pad = 0.05 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)


def stat_panel(ax, groups: dict[str, dict], spec: Spec, ratio_ax=None, span=None) -> None:
    """One statistic for the universes of one column: every model's mean over the instances,
    bands for dm2gal and the HOD (spread over universes and draws), the truth's sampling band;
    with `ratio_ax`, the same as ratios to the truth below. `span` shades an x range."""
    t0 = next(iter(groups.values()))["truth"]
    keep = spec.keep(t0)
    x = spec.x(t0)[keep]
    models = _models(groups)
    drawn = []
    if spec.err is not None and len(groups) == 1:
        y, e = spec.y(t0)[keep], spec.err(t0)[keep]
        ax.fill_between(x, y - e, y + e, color="0.8", lw=0, label="truth sampling error", zorder=0,
                        step="mid" if spec.steps else None)
        if ratio_ax is not None:
            ratio_ax.fill_between(x, 1 - e / np.abs(y), 1 + e / np.abs(y), color="0.8", lw=0, zorder=0,
                                  step="mid" if spec.steps else None)
    marker = None if spec.log_x else "."
    for m in models:
        rows = instances(groups, m, spec, ratio=False)
        drawn += _draw(ax, x, rows, m, spec.steps, m in BANDED or (m == "truth" and len(groups) > 1), marker)
    if spec.log_x:
        _log_x(ax, spec.k_axis)
    _scale(ax, drawn, log_ok=True, floor=0.5 if spec.steps else None)
    ax.set_ylabel(spec.ylabel)
    if ratio_ax is None:
        ax.set_xlabel(spec.xlabel)
        return
    ratios = []
    ratio_ax.axhline(1.0, color="k", lw=0.8)
    for m in models:
        if m != "truth":
            rows = instances(groups, m, spec, ratio=True)
            ratios += _draw(ratio_ax, x, rows, m, spec.steps, m in BANDED, marker)
    if span is not None:
        ratio_ax.axvspan(*span, color="gold", alpha=0.15, lw=0, label="metric range")
    _ratio_scale(ratio_ax, ratios)
    ratio_ax.set_ylabel(spec.ratio_label)
    ratio_ax.set_xlabel(spec.xlabel)


def _ratio_axes(fig, spec):
    top = fig.add_subplot(spec[0])
    bottom = fig.add_subplot(spec[1], sharex=top)
    top.tick_params(which="both", labelbottom=False)
    return top, bottom


def _column_figure(stats_by_universe: dict, specs: list[tuple[Spec, str]], stem, dpi: int,
                   span=None) -> list[str]:
    """Rows of (statistic, ratio) panels per column (test cube, held-out universes) for each
    (spec, title) of `specs` side by side."""
    cols = columns(stats_by_universe)
    n_rows, n_cols = len(cols), len(specs)
    fig = plt.figure(figsize=(4.8 * n_cols, 5.6 * n_rows))
    outer = GridSpec(n_rows, 1, figure=fig, hspace=0.28)
    for r, (name, groups) in enumerate(cols):
        gs = outer[r].subgridspec(2, n_cols, height_ratios=[3, 1.6], hspace=0.05, wspace=0.35)
        for c, (spec, title) in enumerate(specs):
            top, bottom = _ratio_axes(fig, [gs[0, c], gs[1, c]])
            stat_panel(top, groups, spec, bottom, span)
            top.set_title(f"{title}{' - ' if title else ''}{name}", fontsize="medium")
            if c == 0:
                top.legend(fontsize="small")
    return save(fig, stem, dpi)


def pk_figure(stats_by_universe: dict, stem, k_range=None, dpi: int = 150) -> list[str]:
    """pk.png|pdf: P(k) and its ratio to the truth."""
    return _column_figure(stats_by_universe, [(PK, "")], stem, dpi, k_range)


def bk_figure(stats_by_universe: dict, stem, dpi: int = 150) -> list[str]:
    """bk.png|pdf: B(theta) and its ratio to the truth, one column per triangle."""
    tri = next(iter(stats_by_universe.values()))["truth"]["triangles"]
    specs = [(bk_spec(i), rf"$k_1={k1:g},\ k_2={k2:g}$") for i, (k1, k2) in enumerate(tri)]
    return _column_figure(stats_by_universe, specs, stem, dpi)


def pdf_figure(stats_by_universe: dict, stem, metric_min=None, dpi: int = 150) -> list[str]:
    """pdf.png|pdf: the voxel stellar-mass PDF and its ratio to the truth."""
    t = next(iter(stats_by_universe.values()))["truth"]
    span = None if metric_min is None else (10.0**metric_min, 10.0 ** t["pdf_edges"][-1])
    return _column_figure(stats_by_universe, [(PDF, "")], stem, dpi, span)


def r_figure(stats_by_universe: dict, stem, k_r=None, dpi: int = 150) -> list[str]:
    """r.png|pdf: cross-correlation coefficient r(k) with the truth, and T(k) = sqrt(P / P_truth),
    per column (test cube, held-out universes), means and bands over the instances."""
    cols = columns(stats_by_universe)
    fig = plt.figure(figsize=(6 * len(cols), 6))
    gs = GridSpec(2, len(cols), height_ratios=[1, 1], hspace=0.05, wspace=0.3)
    for c, (name, groups) in enumerate(cols):
        top, bottom = _ratio_axes(fig, [gs[0, c], gs[1, c]])
        t0 = next(iter(groups.values()))["truth"]
        for ax, key in ((top, "r"), (bottom, "transfer")):
            spec = Spec(lambda s, key=key: s[key], lambda t: t["k"], _below_nyquist, None, K_LABEL, "", "")
            for m in _models(groups):
                if m != "truth":
                    _draw(ax, t0["k"][_below_nyquist(t0)], instances(groups, m, spec, False), m, False,
                          m in BANDED)
            ax.axhline(1.0, color="k", lw=0.8)
            if k_r is not None:
                ax.axvline(k_r, color="0.5", ls=":", lw=1)
        _log_x(top)
        top.set_ylim(min(0.0, top.get_ylim()[0]), 1.05)
        top.set_title(name, fontsize="medium")
        top.set_ylabel(r"$r(k) = P_\times / \sqrt{P\,P_\mathrm{truth}}$")
        bottom.set_ylabel(r"$T(k) = \sqrt{P / P_\mathrm{truth}}$")
        bottom.set_xlabel(K_LABEL)
        if c == 0:
            top.legend(fontsize="small")
    return save(fig, stem, dpi)


def region_corner(truth: np.ndarray, size: int, centre: str) -> list[int]:
    """First voxel [3] (in cube coordinates) of Figure 1's region of `size`^3 voxels inside the
    cube: centred on the cube ('cube_centre') or on its most massive truth voxel ('most_massive')."""
    n = truth.shape[0]
    if size > n:
        raise ValueError(f"Figure 1 region of {size} voxels exceeds the test cube ({n} voxels)")
    if centre == "most_massive":
        mid = np.unravel_index(int(np.argmax(truth)), truth.shape)
    elif centre == "cube_centre":
        mid = (n // 2,) * 3
    else:
        raise ValueError(f"unknown region centre {centre!r}")
    return [int(np.clip(c - size // 2, 0, n - size)) for c in mid]


def project(cube: np.ndarray, corner, size: int) -> np.ndarray:
    """Mass of the region [corner, corner + size)^3 of a cube, summed along the third axis."""
    x, y, z = corner
    return cube[x:x + size, y:y + size, z:z + size].sum(axis=2, dtype=np.float64)


def figure1(maps: dict[str, np.ndarray], test: dict, region_mpc: float, stem,
            dpi: int = 150) -> list[str]:
    """The paper's Figure 1: five projected maps (keys of `MAPS`, each (size, size) of Msun/h
    per column) of a region of side `region_mpc` [Mpc/h]; below, P(k), B(theta) of the first
    triangle and the PDF of the test cube (`test`: {'truth' | model: dict}) for truth, dm2gal
    and HOD (mean and scatter over draws), and the oracle and ideal paintings when present."""
    fig = plt.figure(figsize=(17, 8.5))
    outer = fig.add_gridspec(2, 1, height_ratios=[1, 1.05], hspace=0.3)
    top_row = outer[0].subgridspec(1, 5, wspace=0.3)
    bottom_row = outer[1].subgridspec(1, 3, wspace=0.4)
    stellar = [maps[k] for k in ("dm2gal", "truth", "hod")]
    positive = np.concatenate([m[m > 0] for m in stellar]) if any((m > 0).any() for m in stellar) else [1.0]
    s_lim = (np.log10(np.min(positive)), np.log10(np.max(positive)))
    extent = (0, region_mpc, 0, region_mpc)
    for j, (key, title, what) in enumerate(MAPS):
        ax = fig.add_subplot(top_row[j])
        img = maps[key]
        with np.errstate(divide="ignore"):
            logm = np.log10(img)
        if key in ("dm", "subhalos"):
            pos = img[img > 0]
            lim = (np.log10(pos.min()), np.log10(pos.max())) if pos.size else (0, 1)
            cmap = "magma" if key == "dm" else "viridis"
        else:
            lim, cmap = s_lim, "inferno"
        im = ax.imshow(np.where(np.isfinite(logm), logm, lim[0]).T, origin="lower", extent=extent,
                       cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_title(f"{title}\n({what})", fontsize="medium")
        ax.set_xlabel(r"$x\ [h^{-1}\mathrm{Mpc}]$")
        if j == 0:
            ax.set_ylabel(r"$y\ [h^{-1}\mathrm{Mpc}]$")
        cb = fig.colorbar(im, ax=ax, orientation="horizontal", pad=0.22, fraction=0.05)
        cb.set_label(r"$\log_{10} M\ [h^{-1}M_\odot]$", fontsize="small")
    groups = {TEST: test}
    k1, k2 = test["truth"]["triangles"][0]
    for j, spec in enumerate((PK, bk_spec(0), PDF)):
        ax = fig.add_subplot(bottom_row[j])
        stat_panel(ax, groups, spec)
        if j == 0:
            ax.legend(fontsize="small")
        if j == 1:
            ax.set_title(rf"$k_1={k1:g},\ k_2={k2:g}\ h\,\mathrm{{Mpc}}^{{-1}}$", fontsize="medium")
    return save(fig, stem, dpi)


def figure1_maps(cubes: dict[str, np.ndarray], dark_paths: dict[str, str], cube_start, corner,
                 size: int) -> dict[str, np.ndarray]:
    """Figure 1's five projected maps of the region [corner, corner + size)^3 of the test cube.

    `cubes` holds the stellar-mass test cubes 'truth', 'dm2gal', 'hod'; `dark_paths` the
    whole-box gravity-only fields 'dm' and 'subhalos', read periodically at
    cube_start + corner (only that region is read).
    """
    from .fields import open_field, read_periodic

    maps = {key: project(cubes[key], corner, size) for key in ("truth", "dm2gal", "hod")}
    origin = [int(s) + int(c) for s, c in zip(cube_start, corner)]
    for key in ("dm", "subhalos"):
        region = read_periodic(open_field(dark_paths[key]), origin, (size,) * 3)
        maps[key] = project(region, (0, 0, 0), size)
    return maps


def make_figures(stats_paths: dict[str, dict[str, str]], fields: dict[str, str], cubes_json, out_dir,
                 stats_cfg: dict, fig_cfg: dict) -> list[str]:
    """Every figure of a run into `out_dir`: figure1, pk, bk, pdf, r (.png and .pdf each).

    `stats_paths` maps {universe: {'truth' | model: `.npz`}} ('test' required, for Figure 1);
    `fields` holds the paths 'hydro' (whole-box
    stellar mass), 'dm2gal' and 'hod' (test-cube fields), 'dm' and 'subhalos' (whole-box
    gravity-only fields); `stats_cfg` and `fig_cfg` are the config sections.
    """
    from .stats import load_stats, read_model_cube, read_truth

    out = Path(out_dir)
    all_stats = {u: {m: load_stats(p) for m, p in paths.items()} for u, paths in stats_paths.items()}
    dpi = fig_cfg["dpi"]
    paths = pk_figure(all_stats, out / "pk", stats_cfg["k_range"], dpi)
    paths += bk_figure(all_stats, out / "bk", dpi)
    paths += pdf_figure(all_stats, out / "pdf", stats_cfg["pdf"]["metric_log10_mass_min"], dpi)
    paths += r_figure(all_stats, out / "r", stats_cfg["r_at_k"], dpi)

    truth, attrs = read_truth(fields["hydro"], cubes_json)
    start, n = attrs["origin"], attrs["n_grid"]
    cubes = {"truth": truth, **{m: read_model_cube(fields[m], start, n)[0] for m in ("dm2gal", "hod")}}
    size = min(int(fig_cfg["figure1"]["region_voxels"]), n)
    if size < fig_cfg["figure1"]["region_voxels"]:
        log.warning("Figure 1 region cut to the test cube: %d voxels", n)
    corner = region_corner(truth, size, fig_cfg["figure1"]["centre"])
    region_mpc = attrs["box_size"] * size / n
    log.info("Figure 1 region: %d^3 voxels (%.2f Mpc/h) at cube voxel %s", size, region_mpc, corner)
    maps = figure1_maps(cubes, {"dm": fields["dm"], "subhalos": fields["subhalos"]}, start, corner, size)
    paths += figure1(maps, all_stats[TEST], region_mpc, out / "figure1", dpi)
    return paths


CURVES = (("train_loss", "training loss"), ("val_mse", "validation MSE"), ("lr", "learning rate"),
          ("selection", "selection statistic (validation P(k))"))
"""The training-curves panels: (history.csv column, axis label)."""


def read_history(path) -> dict[str, np.ndarray]:
    """history.csv (dm2gal.train.HISTORY_COLUMNS) as {column: float array}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in (rows[0] if rows else {})}


def read_selection(summary_tsv) -> dict[str, dict]:
    """select/summary.tsv as {point: {'best_epoch': int, 'selected': bool}}."""
    with open(summary_tsv, newline="") as f:
        return {r["point"]: {"best_epoch": int(r["best_epoch"]), "selected": r["selected"] == "1"}
                for r in csv.DictReader(f, delimiter="\t")}


def training_curves(histories: dict[str, dict[str, np.ndarray]], selection: dict[str, dict], stem,
                    dpi: int = 150) -> list[str]:
    """Training loss, validation MSE, learning rate and selection statistic per epoch of every sweep
    point (`histories`: {point: read_history}); each point's chosen epoch (its best.ckpt) is
    starred, the selected point drawn thick with its chosen epoch as a dotted line."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (point, h) in enumerate(histories.items()):
        sel = selection.get(point, {})
        chosen, won = sel.get("best_epoch"), sel.get("selected", False)
        style = dict(color=colours[j % len(colours)], lw=2.4 if won else 1.2,
                     label=point + (" (selected)" if won else ""))
        at = np.flatnonzero(h["epoch"] == chosen) if chosen is not None else []
        for ax, (key, _) in zip(axes.flat, CURVES):
            ax.plot(h["epoch"], h[key], marker="o", ms=2.5, **style)
            if len(at):
                ax.plot(h["epoch"][at], h[key][at], marker="*", ms=12, ls="none", color=style["color"],
                        markeredgecolor="k")
            if won and chosen is not None:
                ax.axvline(chosen, color=style["color"], ls=":", lw=1)
    for ax, (key, label) in zip(axes.flat, CURVES):
        values = np.concatenate([h[key] for h in histories.values()]) if histories else np.zeros(0)
        finite = values[np.isfinite(values)]
        if finite.size and np.all(finite > 0) and finite.max() > 10 * finite.min():  # a decade or more
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(fontsize=8, title="sweep point (star: chosen epoch)", title_fontsize=8)
    fig.suptitle("Training curves of the hyper-parameter sweep")
    fig.tight_layout()
    return save(fig, stem, dpi)


def make_training_curves(history_paths: list[str], summary_tsv, stem, dpi: int = 150) -> list[str]:
    """`training_curves` of the sweep from its points' history.csv files (train/{point}/history.csv:
    the point is the folder's name) and select/summary.tsv."""
    histories = {Path(p).parent.name: read_history(p) for p in history_paths}
    return training_curves(histories, read_selection(summary_tsv), stem, dpi)
