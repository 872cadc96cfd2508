"""The paper's Figure 1 and one figure per statistic, as PNG and PDF (matplotlib, Agg backend).

Inputs are the `stats.summarise` dicts of `{results}/stats/{model}.npz`, keyed by
model ('truth', 'dm2gal', optionally 'dm2gal_oracle', 'hod'), and for Figure 1
five projected maps of a cubic region of the test cube. Colours follow the
paper: truth blue, dm2gal red, HOD green; the oracle painting is drawn dashed
and always labelled 'dm2gal (oracle positions)'. Every statistic figure has a
ratio-to-truth panel, with the truth's Gaussian (P, B) or Poisson (PDF)
sampling error as a grey band. P(k), r(k) and T(k) are drawn up to the cube's
Nyquist frequency (the .npz files keep every bin).
"""

from __future__ import annotations

import logging
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

log = logging.getLogger(__name__)

STYLE = {
    "truth": dict(color="tab:blue", label="hydro (truth)", ls="-", lw=2.2),
    "dm2gal": dict(color="tab:red", label="dm2gal", ls="-", lw=1.5),
    "dm2gal_oracle": dict(color="darkred", label="dm2gal (oracle positions)", ls="--", lw=1.5),
    "hod": dict(color="tab:green", label="HOD", ls="-", lw=1.5),
}
ORDER = ("truth", "dm2gal", "dm2gal_oracle", "hod")
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


def _models(all_stats: dict) -> list[str]:
    return [m for m in ORDER if m in all_stats]


def _below_nyquist(s: dict) -> np.ndarray:
    """The k bins at or below the cube's Nyquist frequency (shells beyond it are incomplete)."""
    return s["k"] <= np.pi * s["n_grid"] / s["box_size"]


def _line(ax, x, y, model, **kw):
    st = STYLE[model]
    return ax.plot(x, y, **st, **kw)


def _log_x(ax, k_axis: bool = True):
    """Log axis: k labelled at 1, 2, 5 x 10^n in plain numbers; M* at the decades only."""
    ax.set_xscale("log")
    if k_axis:
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _band(ax, x, lo, hi, label=None):
    ax.fill_between(x, lo, hi, color="0.8", lw=0, label=label, zorder=0)


def _pos_scale(ax, *arrays):
    """Log y axis when every value is positive, symmetric-log otherwise (B can change sign)."""
    if all(np.all(np.asarray(a) > 0) for a in arrays):
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=np.nanmax(np.abs(np.concatenate(
            [np.ravel(a) for a in arrays]))) * 1e-3)


def _ratio_axes(fig, spec):
    top = fig.add_subplot(spec[0])
    bottom = fig.add_subplot(spec[1], sharex=top)
    top.tick_params(which="both", labelbottom=False)
    bottom.axhline(1.0, color="k", lw=0.8)
    return top, bottom


def pk_panel(ax, all_stats: dict, ratio_ax=None, k_range=None) -> None:
    """P(k) of every model; with `ratio_ax`, P / P_truth below with the truth's sampling band."""
    t = all_stats["truth"]
    ok = _below_nyquist(t)
    k, pk, err = t["k"][ok], t["pk"][ok], t["pk_err"][ok]
    _band(ax, k, pk - err, pk + err, label="truth sampling error")
    for m in _models(all_stats):
        _line(ax, k, all_stats[m]["pk"][ok], m)
    _log_x(ax)
    ax.set_yscale("log")
    ax.set_ylabel(PK_LABEL)
    if ratio_ax is not None:
        _band(ratio_ax, k, 1 - err / pk, 1 + err / pk)
        for m in _models(all_stats):
            if m != "truth":
                _line(ratio_ax, k, all_stats[m]["pk"][ok] / pk, m)
        if k_range is not None:
            ratio_ax.axvspan(*k_range, color="gold", alpha=0.15, lw=0, label="metric range")
        ratio_ax.set_ylabel(r"$P / P_\mathrm{truth}$")
        ratio_ax.set_xlabel(K_LABEL)
    else:
        ax.set_xlabel(K_LABEL)


def bk_panel(ax, all_stats: dict, i: int = 0, ratio_ax=None) -> None:
    """B(theta) of triangle `i` for every model; with `ratio_ax`, B / B_truth below."""
    t = all_stats["truth"]
    theta = t["theta"]
    k1, k2 = t["triangles"][i]
    _band(ax, theta, t["B"][i] - t["B_err"][i], t["B"][i] + t["B_err"][i])
    for m in _models(all_stats):
        _line(ax, theta, all_stats[m]["B"][i], m, marker=".", ms=3)
    _pos_scale(ax, *(all_stats[m]["B"][i] for m in _models(all_stats)))
    ax.set_title(rf"$k_1={k1:g},\ k_2={k2:g}\ h\,\mathrm{{Mpc}}^{{-1}}$", fontsize="medium")
    ax.set_ylabel(BK_LABEL)
    if ratio_ax is not None:
        rel = t["B_err"][i] / np.abs(t["B"][i])
        _band(ratio_ax, theta, 1 - rel, 1 + rel)
        for m in _models(all_stats):
            if m != "truth":
                _line(ratio_ax, theta, all_stats[m]["B"][i] / t["B"][i], m, marker=".", ms=3)
        ratio_ax.set_ylabel(r"$B / B_\mathrm{truth}$")
        ratio_ax.set_xlabel(THETA_LABEL)
    else:
        ax.set_xlabel(THETA_LABEL)


def pdf_panel(ax, all_stats: dict, ratio_ax=None, metric_min=None) -> None:
    """Voxel counts per log10(M*) bin (not normalised); with `ratio_ax`, N / N_truth below."""
    t = all_stats["truth"]
    edges = 10.0 ** t["pdf_edges"]
    centres = np.sqrt(edges[1:] * edges[:-1])
    for m in _models(all_stats):
        st = STYLE[m]
        ax.stairs(all_stats[m]["pdf_counts"], edges, **st)
    _log_x(ax, k_axis=False)
    ax.set_yscale("log")
    ax.set_ylabel(PDF_LABEL)
    if ratio_ax is not None:
        n = t["pdf_counts"].astype(float)
        ok = n > 0
        rel = 1 / np.sqrt(np.where(ok, n, 1))
        _band(ratio_ax, centres[ok], (1 - rel)[ok], (1 + rel)[ok])
        for m in _models(all_stats):
            if m != "truth":
                _line(ratio_ax, centres[ok], all_stats[m]["pdf_counts"][ok] / n[ok], m, marker=".", ms=3)
        if metric_min is not None:
            ratio_ax.axvspan(10.0**metric_min, edges[-1], color="gold", alpha=0.15, lw=0)
        ratio_ax.set_ylabel(r"$N / N_\mathrm{truth}$")
        ratio_ax.set_xlabel(MSTAR_LABEL)
    else:
        ax.set_xlabel(MSTAR_LABEL)


def _statistic_figure(panel, all_stats: dict, stem, extra, dpi: int) -> list[str]:
    """One statistic drawn by `panel(top, all_stats, bottom, extra)` above its ratio to the truth."""
    fig = plt.figure(figsize=(6, 6))
    top, bottom = _ratio_axes(fig, GridSpec(2, 1, height_ratios=[3, 1.3], hspace=0.05))
    panel(top, all_stats, bottom, extra)
    top.legend(fontsize="small")
    bottom.set_ylim(0, 2)
    return save(fig, stem, dpi)


def pk_figure(all_stats: dict, stem, k_range=None, dpi: int = 150) -> list[str]:
    """pk.png|pdf: P(k) and its ratio to the truth."""
    return _statistic_figure(pk_panel, all_stats, stem, k_range, dpi)


def bk_figure(all_stats: dict, stem, dpi: int = 150) -> list[str]:
    """bk.png|pdf: B(theta) and its ratio to the truth, one column per triangle."""
    n = len(all_stats["truth"]["triangles"])
    fig = plt.figure(figsize=(4.5 * n, 6))
    gs = GridSpec(2, n, height_ratios=[3, 1.3], hspace=0.05, wspace=0.35)
    for i in range(n):
        top, bottom = _ratio_axes(fig, [gs[0, i], gs[1, i]])
        bk_panel(top, all_stats, i, bottom)
        bottom.set_ylim(-1, 3)
        if i == 0:
            top.legend(fontsize="small")
    return save(fig, stem, dpi)


def pdf_figure(all_stats: dict, stem, metric_min=None, dpi: int = 150) -> list[str]:
    """pdf.png|pdf: the voxel stellar-mass PDF and its ratio to the truth."""
    return _statistic_figure(pdf_panel, all_stats, stem, metric_min, dpi)


def r_figure(all_stats: dict, stem, k_r=None, dpi: int = 150) -> list[str]:
    """r.png|pdf: cross-correlation coefficient r(k) with the truth, and T(k) = sqrt(P / P_truth)."""
    fig = plt.figure(figsize=(6, 6))
    top, bottom = _ratio_axes(fig, GridSpec(2, 1, height_ratios=[1, 1], hspace=0.05))
    ok = _below_nyquist(all_stats["truth"])
    for m in _models(all_stats):
        if m != "truth":
            _line(top, all_stats[m]["k"][ok], all_stats[m]["r"][ok], m)
            _line(bottom, all_stats[m]["k"][ok], all_stats[m]["transfer"][ok], m)
    if k_r is not None:
        for ax in (top, bottom):
            ax.axvline(k_r, color="0.5", ls=":", lw=1)
    top.axhline(1.0, color="k", lw=0.8)
    _log_x(top)
    top.set_ylim(min(0.0, top.get_ylim()[0]), 1.05)
    top.set_ylabel(r"$r(k) = P_\times / \sqrt{P\,P_\mathrm{truth}}$")
    bottom.set_ylabel(r"$T(k) = \sqrt{P / P_\mathrm{truth}}$")
    bottom.set_xlabel(K_LABEL)
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


def figure1(maps: dict[str, np.ndarray], all_stats: dict, region_mpc: float, stem,
            dpi: int = 150) -> list[str]:
    """The paper's Figure 1: five projected maps (keys of `MAPS`, each (size, size) of Msun/h
    per column) of a region of side `region_mpc` [Mpc/h]; below, P(k), B(theta) of the first
    triangle and the PDF, for truth, dm2gal and HOD (and the oracle painting when present)."""
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
    ax_pk = fig.add_subplot(bottom_row[0])
    pk_panel(ax_pk, all_stats)
    ax_pk.legend(fontsize="small")
    ax_bk = fig.add_subplot(bottom_row[1])
    bk_panel(ax_bk, all_stats, 0)
    ax_pdf = fig.add_subplot(bottom_row[2])
    pdf_panel(ax_pdf, all_stats)
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


def make_figures(stats_paths: dict[str, str], fields: dict[str, str], cubes_json, out_dir,
                 stats_cfg: dict, fig_cfg: dict) -> list[str]:
    """Every figure of a run into `out_dir`: figure1, pk, bk, pdf, r (.png and .pdf each).

    `stats_paths` maps model -> `{model}.npz`; `fields` holds the paths 'hydro' (whole-box
    stellar mass), 'dm2gal' and 'hod' (test-cube fields), 'dm' and 'subhalos' (whole-box
    gravity-only fields); `stats_cfg` and `fig_cfg` are the config sections.
    """
    from pathlib import Path

    from .stats import load_stats, read_model_cube, read_truth

    out = Path(out_dir)
    all_stats = {m: load_stats(p) for m, p in stats_paths.items()}
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
    paths += figure1(maps, all_stats, region_mpc, out / "figure1", dpi)
    return paths
