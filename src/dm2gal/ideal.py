"""The ideal painter's realisations: the mini-universe's galaxy generator drawn again.

The mini-universe writes beside each hydro galaxy the mean stellar mass its generator drew
from (`SubhaloStellarMassMean`, a log-normal's mean in linear mass) and draws log10 M*
with `acquire.synthetic.galaxies.scatter` dex around it. A realisation draws every galaxy
again from that log-normal at its hydro position and deposits it as the truth is
deposited (CIC of the catalogue at SubhaloPos, the whole box): a statistical twin of the
truth, whose scores hold only the scatter's noise, the floor no painter reaches on
average. The noise-free mean itself (model 'ideal') lacks the shot noise of that
scatter: its P(k) is about 0.8 of the truth's at k = 4-6 h/Mpc on the mini-universe,
which is why the HOD, which draws a scatter, can beat it on P(k).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .atomic import atomic_path
from .cic import deposit_cube
from .fields import create_field, open_field
from .tng import load_subhalos

log = logging.getLogger("dm2gal.ideal")


def draw_masses(mean: np.ndarray, scatter_dex, rng: np.random.Generator) -> np.ndarray:
    """(N,) stellar masses [Msun/h] drawn from log-normals of mean `mean` (N,) [Msun/h] and
    log10 scatter `scatter_dex` [dex] (one for all, or (N,)), one independent draw per galaxy."""
    z = rng.standard_normal(len(mean))
    return np.asarray(mean, np.float64) * 10.0 ** (scatter_dex * z - 0.5 * math.log(10.0) * scatter_dex ** 2)


def write_ideal_realisations(out_paths, ideal_field, hydro_base: str, snapshot: int, scatter_dex: float,
                             seed) -> None:
    """One whole-box field per path of `out_paths` (attributes as the noise-free mean field
    `ideal_field`'s, plus the draw), each written atomically: the hydro galaxies of
    illustris_python's `base` redrawn (`draw_masses`) and deposited with the field's mas;
    draw i uses numpy's SeedSequence(seed).spawn(n)[i]."""
    attrs = dict(open_field(ideal_field).attrs)
    subs = load_subhalos(hydro_base, snapshot, ["SubhaloPos", "SubhaloStellarMassMean"])
    pos, mean = subs["SubhaloPos"], subs["SubhaloStellarMassMean"]
    n, box = int(attrs["n_grid"]), float(attrs["box_size"])
    for i, (path, child) in enumerate(zip(out_paths, np.random.SeedSequence(seed).spawn(len(out_paths)))):
        mass = draw_masses(mean, scatter_dex, np.random.default_rng(child))
        cube = deposit_cube(pos, mass, box, n, (0, 0, 0), n, mas=attrs["mas"])
        with atomic_path(path) as tmp:
            out = create_field(tmp, dict(attrs, quantity="stellar_mass_ideal_realisation", realisation=i,
                                         realisations=len(out_paths), seed=seed, scatter_dex=scatter_dex))
            out[...] = cube
    log.info("%d ideal realisations of %d galaxies drawn with %.3g dex (seed %s)", len(out_paths), len(mean),
             scatter_dex, seed)
