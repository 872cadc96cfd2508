"""Summary statistics of stellar-mass cubes: P(k), r(k) and T(k) from Pylians' `Pk_library`,
B from its estimator computed in Fourier space (`dm2gal.bispectrum`).

A cube is an (n, n, n) float array of stellar mass per voxel [Msun/h] of side
`box_size` [Mpc/h]; Pylians treats it as periodic (as the paper does for its
test cube). Clustering statistics use the overdensity delta = M / <M> - 1, and
the same mass-assignment window (`mas`, 'CIC' by default) is deconvolved in
P(k), the cross-spectra and B alike. Units: k [h/Mpc], P [(Mpc/h)^3],
B [(Mpc/h)^6], theta [rad].

- `power_spectrum`: P(k) in Pylians' linear bins (width 2 pi / box_size), with
  the Gaussian sampling error P / sqrt(N_modes).
- `cross_statistics`: r(k) = P_xy / sqrt(P_x P_y) and transfer function
  T(k) = sqrt(P_pred / P_true), from one `XPk` call.
- `bispectrum`: B(k1, k2, theta) and Q, with the Gaussian error
  sqrt(V P1 P2 P3 / N_triangles).
- `pdf_counts`: number of voxels per log10(M*) bin (not normalised, as in the paper).
- `summarise`: all of the above for one model, as the arrays of
  `{results}/stats/{universe}/{model}.npz` (universe "test": the training universe's test
  cube; a held-out universe: its whole box).
- `stack_realisations`: the summaries of an ensemble (the HOD's draws) in one dict, every
  per-field array with a leading axis of length N.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

import numpy as np

from .atomic import atomic_path
from .bispectrum import bispectra as fourier_bispectra
from .fields import cube_attrs, open_field, read_field, read_periodic
from .split import read_cubes

log = logging.getLogger(__name__)

@contextlib.contextmanager
def _quiet():
    """Send Pylians' progress prints (stdout) to the debug log instead of the terminal."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.debug("Pylians: %s", " | ".join(buf.getvalue().split("\n")))


def overdensity(field: np.ndarray) -> np.ndarray:
    """delta = M / <M> - 1 as contiguous float32 (n, n, n); raises if the cube holds no mass."""
    mean = float(np.mean(field, dtype=np.float64))
    if not mean > 0:
        raise ValueError(f"cannot form an overdensity: mean voxel mass is {mean}")
    delta = np.array(field, dtype=np.float32, order="C")  # a float32 copy: no float64 temporaries
    delta /= np.float32(mean)
    delta -= np.float32(1.0)
    return delta


def power_spectrum(delta: np.ndarray, box_size: float, mas: str = "CIC", threads: int = 1) -> dict:
    """Monopole P(k) of a cubic overdensity: {'k', 'pk', 'nmodes', 'pk_err'} (1D arrays per k bin)."""
    import Pk_library as PKL  # Pylians: ~1 s to import; the Snakefile's config checks import this module

    with _quiet():
        p = PKL.Pk(np.ascontiguousarray(delta, dtype=np.float32), float(box_size), 0, mas, threads,
                   verbose=False)
    nmodes = np.asarray(p.Nmodes3D, dtype=np.float64)
    pk = np.asarray(p.Pk[:, 0], dtype=np.float64)
    return dict(k=np.asarray(p.k3D, dtype=np.float64), pk=pk, nmodes=nmodes,
                pk_err=np.abs(pk) / np.sqrt(nmodes))


def cross_statistics(delta_pred: np.ndarray, delta_true: np.ndarray, box_size: float,
                     mas: str = "CIC", threads: int = 1) -> dict:
    """r(k) and T(k) of a prediction against the truth: {'k', 'pxy', 'r', 'transfer'}."""
    import Pk_library as PKL  # Pylians: ~1 s to import; the Snakefile's config checks import this module

    fields = [np.ascontiguousarray(d, dtype=np.float32) for d in (delta_pred, delta_true)]
    with _quiet():
        x = PKL.XPk(fields, float(box_size), 0, MAS=[mas, mas], threads=threads)
    p_pred, p_true, pxy = x.Pk[:, 0, 0], x.Pk[:, 0, 1], x.XPk[:, 0, 0]
    return dict(k=np.asarray(x.k3D, dtype=np.float64), pxy=np.asarray(pxy, dtype=np.float64),
                r=np.asarray(pxy / np.sqrt(p_pred * p_true), dtype=np.float64),
                transfer=np.asarray(np.sqrt(p_pred / p_true), dtype=np.float64))


def resolved(k1: float, k2: float, box_size: float, n_grid: int) -> bool:
    """Whether every triangle (k1, k2, theta) fits the cube: shells (half-width k_F) above the
    fundamental mode and the largest k3 = k1 + k2 (theta = 0) below the Nyquist frequency."""
    kf = 2 * np.pi / box_size
    knyq = np.pi * n_grid / box_size
    return min(k1, k2) - kf >= kf and k1 + k2 + kf <= knyq


def bispectra(delta: np.ndarray, box_size: float, triangles, theta: np.ndarray, mas: str = "CIC",
              threads: int = 1) -> list[dict]:
    """B(k1, k2, theta) of a cubic overdensity for each (k1, k2) [h/Mpc] of `triangles`, one
    value per angle (theta in radians).

    Pylians' `Bk` estimator, computed in Fourier space (`dm2gal.bispectrum`: equal to
    `Pk_library.Bk` to float32 rounding, about 10x faster). Returns one {'B', 'Q', 'k3',
    'B_err'} per triangle; B_err is the Gaussian sampling error sqrt(V P(k1) P(k2) P(k3) /
    N_tri), with N_tri the number of triangles in the bin (Pylians' `triangles` times n^6).
    Raises if a triangle is not resolved.
    """
    n = delta.shape[0]
    for k1, k2 in triangles:
        if not resolved(k1, k2, box_size, n):
            raise ValueError(f"triangle k1={k1}, k2={k2} h/Mpc is not resolved by a cube of "
                             f"{box_size:.3g} Mpc/h on {n}^3 voxels (k_F={2 * np.pi / box_size:.3g}, "
                             f"k_Nyq={np.pi * n / box_size:.3g} h/Mpc)")
    out = []
    for b in fourier_bispectra(delta, box_size, triangles, theta, mas, threads):
        pk = b["pk"]  # P(k1), P(k2), P(k3(theta))
        n_tri = b["triangles"] * float(n) ** 6
        err = np.sqrt(box_size**3 * np.abs(pk[0] * pk[1] * pk[2:]) / n_tri)
        out.append(dict(B=b["B"], Q=b["Q"], k3=b["k3"], B_err=err))
    return out


def bispectrum(delta: np.ndarray, box_size: float, k1: float, k2: float, theta: np.ndarray,
               mas: str = "CIC", threads: int = 1) -> dict:
    """`bispectra` of one triangle (k1, k2) [h/Mpc]."""
    return bispectra(delta, box_size, [(k1, k2)], theta, mas, threads)[0]


def pdf_counts(field: np.ndarray, log10_edges: np.ndarray) -> np.ndarray:
    """Number of voxels with log10(M* [Msun/h]) in each bin (empty voxels fall in none)."""
    m = np.asarray(field, dtype=np.float64).ravel()
    return np.histogram(np.log10(m[m > 0]), bins=log10_edges)[0].astype(np.int64)


def pdf_edges(cfg: dict) -> np.ndarray:
    """log10(M*) bin edges from the `stats.pdf` config section."""
    return np.linspace(cfg["log10_mass_min"], cfg["log10_mass_max"], cfg["n_bins"] + 1)


def angles(n_angles: int) -> np.ndarray:
    """The bispectrum angles [rad]: n_angles values evenly spanning [0, pi]."""
    return np.linspace(0.0, np.pi, n_angles)


def summarise(field: np.ndarray, box_size: float, cfg: dict, truth: np.ndarray | None = None,
              threads: int = 1) -> dict:
    """Every statistic of one cube, as a flat dict of arrays (the content of `{model}.npz`).

    `cfg` is the `stats` config section; `truth` (same shape) adds r(k) and T(k).
    Keys: k, pk, pk_err, nmodes; theta, triangles [n_tri, 2], B, Q, B_err, k3
    [n_tri, n_angles]; pdf_edges, pdf_counts, n_empty; with truth: r, transfer;
    plus box_size, n_grid, mas, total_mass.
    """
    if field.ndim != 3 or len(set(field.shape)) != 1:
        raise ValueError(f"expected a cubic field, got shape {field.shape}")
    if truth is not None and truth.shape != field.shape:
        raise ValueError(f"truth shape {truth.shape} differs from field shape {field.shape}")
    mas = cfg["mas"]
    delta = overdensity(field)
    out = dict(box_size=float(box_size), n_grid=field.shape[0], mas=mas,
               total_mass=float(np.sum(field, dtype=np.float64)))
    out.update(power_spectrum(delta, box_size, mas, threads))
    log.info("P(k): %d bins, k = %.3g..%.3g h/Mpc", len(out["k"]), out["k"][0], out["k"][-1])

    theta = angles(cfg["bk"]["n_angles"])
    tri = np.asarray(cfg["bk"]["triangles"], dtype=np.float64).reshape(-1, 2)
    bks = bispectra(delta, box_size, tri, theta, mas, threads)
    log.info("B: %d triangles x %d angles", len(tri), len(theta))
    out.update(theta=theta, triangles=tri,
               **{key: np.stack([b[key] for b in bks]) for key in ("B", "Q", "k3", "B_err")})

    edges = pdf_edges(cfg["pdf"])
    out.update(pdf_edges=edges, pdf_counts=pdf_counts(field, edges),
               n_empty=int(np.count_nonzero(field <= 0)))
    if truth is not None:
        cross = cross_statistics(delta, overdensity(truth), box_size, mas, threads)
        out.update(r=cross["r"], transfer=cross["transfer"])
    return out


SHARED_KEYS = ("k", "nmodes", "theta", "triangles", "k3", "pdf_edges", "box_size", "n_grid", "mas")
"""`summarise` entries fixed by the cube and the config, the same for every realisation."""


def stack_realisations(summaries: list[dict]) -> dict:
    """One dict from the `summarise` outputs of N realisations of a model on the same cube.

    Every per-field entry (pk, pk_err, B, Q, B_err, pdf_counts, n_empty, total_mass, r,
    transfer, ...) gets a leading axis of length N; `SHARED_KEYS` stay as they are (and
    must agree); `realisations` = N.
    """
    if not summaries:
        raise ValueError("no realisations to stack")
    first = summaries[0]
    if any(set(s) != set(first) for s in summaries):
        raise ValueError("realisations have different statistics")
    out = {"realisations": len(summaries)}
    for key, value in first.items():
        if key in SHARED_KEYS:
            if not all(np.array_equal(np.asarray(s[key]), np.asarray(value)) for s in summaries):
                raise ValueError(f"realisations differ in {key!r}, which depends on the cube only")
            out[key] = value
        else:
            out[key] = np.stack([np.asarray(s[key]) for s in summaries])
    return out


def split_realisations(stats: dict) -> list[dict]:
    """The inverse of `stack_realisations`: one `summarise` dict per realisation (a file
    without realisations is a list of itself)."""
    if "realisations" not in stats:
        return [stats]
    n = int(stats["realisations"])
    return [{key: (value if key in SHARED_KEYS else value[i]) for key, value in stats.items() if key != "realisations"}
            for i in range(n)]


def save_stats(path: str | os.PathLike, stats: dict) -> None:
    """Write a `summarise` dict to an .npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **stats)


def load_stats(path: str | os.PathLike) -> dict:
    """Read a `{model}.npz` back: arrays, with 0-d entries as Python scalars (an ensemble's
    file comes back as `stack_realisations` wrote it, with `realisations` = N)."""
    with np.load(path) as z:
        return {key: (z[key].item() if z[key].ndim == 0 else z[key]) for key in z.files}


def read_truth(hydro_field: str | os.PathLike, cubes_json: str | os.PathLike | None) -> tuple[np.ndarray, dict]:
    """The true stellar mass of the region, cut periodically from the whole-box hydro field:
    the test cube of `cubes_json`, or the whole box when it is None. Returns (array (size,)*3
    [Msun/h], `dm2gal.fields.cube_attrs`: box_size = region side [Mpc/h], n_grid, origin, ...)."""
    arr = open_field(hydro_field)
    parent = dict(arr.attrs)
    test = read_cubes(cubes_json).test if cubes_json is not None else None
    start, size = (test.start, test.size) if test else ((0, 0, 0), int(parent["n_grid"]))
    return read_periodic(arr, start, (size,) * 3), cube_attrs(parent, start, size)


def read_model_cube(path: str | os.PathLike, start: list[int], size: int) -> tuple[np.ndarray, dict]:
    """A model's field over the region (first voxel `start`, side `size`): a painted or HOD cube
    field, checked to cover exactly that region (origin, size), or a whole-box grid field (no
    origin, e.g. the ideal painter's), cut from it."""
    arr = open_field(path)
    attrs = dict(arr.attrs)
    if "origin" not in attrs:
        return read_periodic(arr, start, (size,) * 3), attrs
    data, attrs = read_field(path)
    if int(attrs["n_grid"]) != size or [int(o) for o in attrs["origin"]] != list(start):
        raise ValueError(f"{path} covers origin {attrs.get('origin')} size {attrs['n_grid']}, "
                         f"but the test cube is origin {list(start)} size {size}")
    return data, attrs


def model_statistics(model: str, hydro_field, cubes_json, cfg: dict, field=None, threads: int = 1) -> dict:
    """`summarise` for one model over the region: the test cube of `cubes_json`, or the whole box
    of `hydro_field` (a held-out universe) when it is None. The truth is cut from the whole-box
    hydro field; a model's `field` (see `read_model_cube`) gets r(k), T(k) against it; a list of
    fields (an ensemble's realisations, even of one) is summarised one by one and stacked."""
    truth, attrs = read_truth(hydro_field, cubes_json)
    log.info("region: %d^3 voxels, %.3f Mpc/h, origin %s", attrs["n_grid"], attrs["box_size"], attrs["origin"])
    if model == "truth":
        return summarise(truth, attrs["box_size"], cfg, threads=threads)

    def one(path):
        data, _ = read_model_cube(path, attrs["origin"], attrs["n_grid"])
        return summarise(data, attrs["box_size"], cfg, truth=truth, threads=threads)
    if isinstance(field, (list, tuple)):
        return stack_realisations([one(f) for f in field])
    return one(field)
