"""A small clustered toy universe for the split/sampler/train tests.

Dark matter: a log-normal field (smoothed Gaussian noise, periodic). Subhalos sit on
voxels drawn with probability rising steeply with the local density; their masses
scale with the smoothed density around them. Stellar mass is a known deterministic
function of the inputs: M* = 1e9 (M_sub / 1e11)^1.4 (rho_s / <rho_s>)^0.5 at the
subhalo voxels, 0 elsewhere, where rho_s is the dark-matter density smoothed over a
few voxels. A network that reads the patch can learn it exactly; the training-mean
predictor cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dm2gal import tng
from dm2gal.fields import field_attrs, write_field

COSMO = dict(BoxSize=20.0, Omega0=0.3089, OmegaLambda=0.6911, HubbleParam=0.6774, Redshift=0.0, Time=1.0)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    n = x.shape[0]
    k = np.fft.fftfreq(n) * 2 * np.pi
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + np.fft.rfftfreq(n)[None, None, :] ** 2 * (2 * np.pi) ** 2
    return np.fft.irfftn(np.fft.rfftn(x) * np.exp(-0.5 * k2 * sigma ** 2), s=x.shape, axes=(0, 1, 2))


def toy_fields(n: int = 32, n_sub: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """{'dm', 'subhalo', 'stellar'}: (n, n, n) float32 fields [Msun/h] on a periodic grid."""
    rng = np.random.default_rng(seed)
    g = _smooth(rng.standard_normal((n, n, n)), 1.5)
    g /= g.std()
    dm = (1e10 * np.exp(1.0 * g - 0.5)).astype(np.float64)
    rho_s = _smooth(dm, 2.0)
    p = np.exp(2.5 * g).ravel()
    voxels = rng.choice(n ** 3, size=n_sub, replace=False, p=p / p.sum())
    sub = np.zeros(n ** 3)
    sub[voxels] = 1e11 * (rho_s.ravel()[voxels] / rho_s.mean()) ** 1.5 * np.exp(0.4 * rng.standard_normal(n_sub))
    sub = sub.reshape(n, n, n)
    stellar = np.where(sub > 0, 1e9 * (sub / 1e11) ** 1.4 * np.sqrt(rho_s / rho_s.mean()), 0.0)
    return {"dm": dm.astype(np.float32), "subhalo": sub.astype(np.float32), "stellar": stellar.astype(np.float32)}


def write_toy(results: Path, data: Path, n: int = 32, n_sub: int = 600, seed: int = 0,
              box: float = COSMO["BoxSize"]) -> dict[str, np.ndarray]:
    """Write the toy fields where the grid stage puts them, and matching group catalogues.

    Returns the fields. Catalogues: one FoF group per subhalo voxel (position = voxel
    centre, mass = subhalo mass, the subhalo its central) in both runs, and hydro subhalos carrying the voxel's
    stellar mass as SubhaloMassType[:, 4].
    """
    f = toy_fields(n, n_sub, seed)
    names = {"dm": ("dark", "dm_mass"), "subhalo": ("dark", "subhalo_mass"), "stellar": ("hydro", "stellar_mass")}
    for key, (run, quantity) in names.items():
        attrs = field_attrs(box_size=box, n_grid=n, source=f"toy-{run}", snapshot=99, mas="CIC", quantity=quantity,
                            total_mass=float(f[key].sum(dtype=np.float64)))
        write_field(results / "fields" / run / f"{quantity}.zarr", f[key], attrs, chunk=16)
    idx = np.argwhere(f["subhalo"] > 0)
    pos = (idx + 0.5) * box / n
    mass = f["subhalo"][tuple(idx.T)].astype(np.float64)
    header = dict(COSMO, BoxSize=box)
    halos = {"GroupPos": pos, "GroupMass": mass, "Group_M_Crit200": 0.8 * mass,
             "GroupFirstSub": np.arange(len(pos), dtype=np.int32)}
    for run in ("dark", "hydro"):
        subs = {"SubhaloPos": pos, "SubhaloMass": mass, "SubhaloGrNr": np.arange(len(pos), dtype=np.int32)}
        if run == "hydro":
            mtype = np.zeros((len(pos), 6))
            mtype[:, 4] = f["stellar"][tuple(idx.T)]
            subs["SubhaloMassType"] = mtype
        tng.write_groupcat(data / run / "output", 99, header, halos, subs, 1)
    return f
