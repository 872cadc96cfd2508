"""Periodic cloud-in-cell deposit into any slab of planes of a cubic grid.

The weights are those of Pylians' `MAS_library.MA(..., MAS='CIC')`: grid point i
sits at x = i * BoxSize / n_grid, a particle at cell coordinate d = x n_grid / BoxSize
gives 1 - (d - floor d) of its mass to point floor(d) and the rest to floor(d) + 1,
per axis, all indices taken modulo n_grid. MA only fills a whole cubic grid; this
module fills a slab of `nx` consecutive x-planes (periodic in x too), so no
process needs the whole grid. Only numpy is used (np.add.at accumulates in the
slab's own float32 memory, like MA).

The arithmetic is MA's too: cell coordinates d = x * float32(n_grid / BoxSize) and
weights in float32. Those carry an absolute error of up to ~n_grid * 6e-8 in the
fraction (7e-5 at 1024^3, the same size as the float32 position quantum
BoxSize * 6e-8), so a float64 CIC would differ from MA by that much per particle;
computing as MA does keeps the two paths equal up to the summation order.
"""

from __future__ import annotations

import numpy as np

BATCH = 1 << 20
"""Particles per vectorised batch (bounds the temporaries to ~100 MB)."""


def wrap_positions(pos: np.ndarray, box_size: float) -> np.ndarray:
    """Positions [Mpc/h, (n, 3)] wrapped into [0, box_size] as float32 (MA's input type).

    A coordinate that rounds up to exactly box_size in float32 is kept: both MA
    and `deposit` take grid indices modulo n_grid, so it lands on point 0.
    """
    return np.mod(np.asarray(pos, dtype=np.float64), box_size).astype(np.float32)


def cell_index(x: np.ndarray, n_grid: int, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower grid point (int64 in [0, n_grid)) and float32 fraction u in [0, 1] past it, as MA computes them.

    `x` [Mpc/h] must already be in [0, box_size] (see `wrap_positions`).
    """
    d = np.asarray(x, dtype=np.float32) * np.float32(n_grid / box_size)
    lower = np.floor(d)
    return lower.astype(np.int64) % n_grid, d - lower


def slab_of_particles(x: np.ndarray, n_grid: int, box_size: float, thickness: int) -> tuple[np.ndarray, np.ndarray]:
    """For each particle, the slab of its lower x point and whether it also reaches the next slab.

    Slab s holds x-planes [s * thickness, (s + 1) * thickness). A particle whose
    lower point is the last plane of a slab deposits into the first plane of the
    next one (periodically): that is the one-plane margin CIC needs.
    """
    ix, _ = cell_index(x, n_grid, box_size)
    return ix // thickness, (ix % thickness) == thickness - 1


def deposit(out: np.ndarray, pos: np.ndarray, mass: np.ndarray, box_size: float, x0: int = 0) -> None:
    """Add the CIC mass of particles into `out`, in place.

    out: float32 C-contiguous array (nx, n, n) holding grid planes
    x0 .. x0 + nx - 1 (modulo n) of an n^3 periodic grid over `box_size` [Mpc/h];
    pass a whole (n, n, n) grid with x0 = 0 for the full box.
    pos: (m, 3) wrapped positions [Mpc/h]; mass: (m,) [Msun/h]. Contributions to
    planes outside the slab are dropped, so a caller may pass a superset of the
    particles that touch it.
    """
    nx, n, n2 = out.shape
    if n != n2 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"deposit needs a C-contiguous float32 (nx, n, n) slab, got {out.shape} {out.dtype}")
    if len(pos) != len(mass):
        raise ValueError(f"{len(pos)} positions but {len(mass)} masses")
    flat = out.reshape(-1)
    for start in range(0, len(pos), BATCH):
        p = pos[start:start + BATCH]
        m = np.asarray(mass[start:start + BATCH], dtype=np.float32)
        ix, ux = cell_index(p[:, 0], n, box_size)
        iy, uy = cell_index(p[:, 1], n, box_size)
        iz, uz = cell_index(p[:, 2], n, box_size)
        rx0 = (ix - x0) % n  # plane index relative to the slab
        for rx, wx in ((rx0, 1 - ux), ((rx0 + 1) % n, ux)):
            inside = rx < nx
            if not inside.any():
                continue
            row_x = rx[inside] * n
            mx = (m * wx)[inside]
            for jy, wy in ((iy, 1 - uy), ((iy + 1) % n, uy)):
                row_xy = (row_x + jy[inside]) * n
                mxy = mx * wy[inside]
                for jz, wz in ((iz, 1 - uz), ((iz + 1) % n, uz)):
                    np.add.at(flat, row_xy + jz[inside], mxy * wz[inside])
