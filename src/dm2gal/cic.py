"""Periodic cloud-in-cell deposit into any slab of planes of a cubic grid.

The weights are those of Pylians' `MAS_library.MA(..., MAS='CIC')`: grid point i
sits at x = i * BoxSize / n_grid, a particle at cell coordinate d = x n_grid / BoxSize
gives 1 - (d - floor d) of its mass to point floor(d) and the rest to floor(d) + 1,
per axis, all indices taken modulo n_grid. MA only fills a whole cubic grid; this
module fills a slab of `nx` consecutive x-planes (periodic in x too), so no
process needs the whole grid. The deposit is one loop over the particles compiled
by numba (`_deposit_kernel`), which adds in the slab's own float32 memory like MA's
C loop and runs at MA's rate (benchmarks/grid.py, part 0); numba is imported on
the first deposit only, so `cell_index` and `wrap_positions` do not need it.

The arithmetic is MA's too: cell coordinates d = x * float32(n_grid / BoxSize) and
weights in float32. Those carry an absolute error of up to ~n_grid * 6e-8 in the
fraction (7e-5 at 1024^3, the same size as the float32 position quantum
BoxSize * 6e-8), so a float64 CIC would differ from MA by that much per particle;
computing as MA does keeps the two paths equal up to the summation order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from .fields import read_periodic


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


def corners(pos: np.ndarray, n_grid: int, box_size: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The 8 CIC corners of points `pos` (m, 3) [Mpc/h] on the periodic n_grid^3 grid, one at a time:
    (index (3, m) int64 grid point, weight (m,) float32 share of the point's mass), with the
    weights `deposit` and MA use, for code that needs to know which point fed which voxel."""
    wrapped = wrap_positions(pos, box_size)
    lower, frac = zip(*(cell_index(wrapped[:, a], n_grid, box_size) for a in range(3)))
    for offset in itertools.product((0, 1), repeat=3):
        index = np.stack([(lower[a] + d) % n_grid for a, d in enumerate(offset)])
        weight = np.ones(len(wrapped), np.float32)
        for a, d in enumerate(offset):
            weight = weight * (frac[a] if d else 1 - frac[a])
        yield index, weight


def deposit_cube(pos: np.ndarray, mass: np.ndarray, box_size: float, n_grid: int,
                 start, size: int, mas: str = "CIC") -> np.ndarray:
    """Deposit point masses [Msun/h] at `pos` [Mpc/h] with Pylians' `mas` and return the periodic
    cube [start, start + size) of the n_grid^3 parent grid, float32 (size, size, size).

    The same Pylians assignment as a whole-box deposit, done on a padded local grid
    so a 2048^3 parent never has to exist in memory.
    """
    import MAS_library as MASL  # Pylians: ~1 s to import; the Snakefile imports this module (via grid) on every job

    cell = box_size / n_grid
    pad = 3  # beyond the widest kernel Pylians offers (PCS reaches 2 cells)
    m = size + 2 * pad
    if m >= n_grid:  # the cube is (nearly) the whole box: deposit the box, then cut
        grid = np.zeros((n_grid,) * 3, np.float32)
        MASL.MA(np.mod(pos, box_size).astype(np.float32), grid, np.float32(box_size), mas,
                W=mass.astype(np.float32), verbose=False)
        return read_periodic(grid, start, (size,) * 3)
    origin = (np.asarray(start, np.float64) - pad) * cell
    local = np.mod(pos - origin, box_size)  # periodic offset from the padded cube's corner
    keep = np.all(local < (m - 1) * cell, axis=1) & np.all(local >= cell, axis=1)
    grid = np.zeros((m,) * 3, np.float32)
    if keep.any():
        MASL.MA(local[keep].astype(np.float32), grid, np.float32(m * cell), mas,
                W=mass[keep].astype(np.float32), verbose=False)
    return grid[pad:pad + size, pad:pad + size, pad:pad + size].copy()


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
    pos: (m, 3) wrapped positions [Mpc/h] (see `wrap_positions`); mass: (m,)
    [Msun/h]; both are used as float32, like MA's inputs. Contributions to planes
    outside the slab are dropped, so a caller may pass a superset of the particles
    that touch it. A position below 0, NaN, or more than a cell beyond box_size
    raises ValueError (the particles before it are then already in `out`).
    """
    nx, n, n2 = out.shape
    if n != n2 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"deposit needs a C-contiguous float32 (nx, n, n) slab, got {out.shape} {out.dtype}")
    if len(pos) != len(mass):
        raise ValueError(f"{len(pos)} positions but {len(mass)} masses")
    if len(pos) == 0:
        return
    pos = np.ascontiguousarray(pos, dtype=np.float32)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must be (m, 3), got {pos.shape}")
    mass = np.ascontiguousarray(mass, dtype=np.float32)
    # the same float32 inverse cell size as cell_index, so every particle's lower
    # point is the one slab_of_particles bucketed it by
    _kernel()(out, pos, mass, np.float32(n / box_size), x0 % n)


_KERNEL = None


def _kernel():
    """`_deposit_kernel` compiled by numba (cached on disk next to this module), `_add_plane` inlined."""
    global _KERNEL, _add_plane
    if _KERNEL is None:
        import numba  # ~1 s to import: only a deposit needs it, not cell_index or corners

        _add_plane = numba.njit(inline="always")(_add_plane)  # the kernel calls it: compile it first
        _KERNEL = numba.njit(cache=True, nogil=True, error_model="numpy")(_deposit_kernel)
    return _KERNEL


def _add_plane(flat, c, a, b, iz, jz, wx, vy, uy, vz, uz, w):
    """Add mass `w` into the four corners of one x-plane (flat offset `c`) of `_deposit_kernel`'s slab:
    rows `a`, `b` (flat offsets of y = iy, jy), columns iz, jz, weights wx (vy or uy) (vz or uz) w in MA's
    float32 order. Compiled and inlined by `_kernel`."""
    flat[np.uint64(c + a + iz)] += wx * vy * vz * w
    flat[np.uint64(c + a + jz)] += wx * vy * uz * w
    flat[np.uint64(c + b + iz)] += wx * uy * vz * w
    flat[np.uint64(c + b + jz)] += wx * uy * uz * w


def _deposit_kernel(out, pos, mass, inv_cell, x0):
    """CIC of particles `pos` (float32 (m, 3)) with masses `mass` into slab `out` (nx, n, n) of planes x0...

    MA's arithmetic per particle (MAS_library CICW): float32 cell coordinate
    d = x * inv_cell, its integer part (d >= 0), fraction u = d - int(d) and 1 - u in
    float32, weight (1 - u or u)_x (..)_y (..)_z W multiplied in that order, the
    eight corners in MA's order; indices periodic in n. Planes outside the slab are
    skipped. Written for speed: no integer modulo (a wrapped coordinate has
    0 <= int(d) <= n, so one compare wraps it) and unsigned flat indices (no
    negative-index wraparound test); a coordinate outside [0, n + 1) (negative,
    NaN, beyond the box) raises before that particle is written.
    """
    nx, n = out.shape[0], out.shape[1]
    plane = n * n
    flat = out.reshape(-1)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    limit = np.float32(n + 1)
    for i in range(pos.shape[0]):
        dx = pos[i, 0] * inv_cell
        dy = pos[i, 1] * inv_cell
        dz = pos[i, 2] * inv_cell
        if not (zero <= dx < limit and zero <= dy < limit and zero <= dz < limit):
            raise ValueError("deposit: a position is outside [0, BoxSize]; wrap positions first (wrap_positions)")
        ix, iy, iz = int(dx), int(dy), int(dz)
        ux, uy, uz = dx - np.float32(ix), dy - np.float32(iy), dz - np.float32(iz)
        vx, vy, vz = one - ux, one - uy, one - uz
        w = mass[i]
        if iy == n:
            iy = 0
        jy = iy + 1
        if jy == n:
            jy = 0
        if iz == n:
            iz = 0
        jz = iz + 1
        if jz == n:
            jz = 0
        rx = ix - x0  # plane index relative to the slab, in (-n, n]
        if rx < 0:
            rx += n
        elif rx >= n:
            rx -= n
        sx = rx + 1
        if sx == n:
            sx = 0
        a = iy * n
        b = jy * n
        if rx < nx:
            _add_plane(flat, rx * plane, a, b, iz, jz, vx, vy, uy, vz, uz, w)
        if sx < nx:
            _add_plane(flat, sx * plane, a, b, iz, jz, ux, vy, uy, vz, uz, w)


def host_subhalos(coords: np.ndarray, origin, n_grid: int, box_size: float, sub_pos: np.ndarray,
                  sub_mass: np.ndarray) -> np.ndarray:
    """(K,) index of the subhalo giving the most CIC mass to each voxel `coords` (K, 3) of the
    parent n_grid^3 grid (cube-local: offsets from `origin`); -1 where no subhalo reaches it."""
    n = int(n_grid)
    keys, hosts, weights = [], [], []
    for idx, share in corners(sub_pos, n, box_size):
        keys.append((idx[0] * n + idx[1]) * n + idx[2])
        hosts.append(np.arange(len(share)))
        weights.append(np.asarray(sub_mass, np.float64) * share)
    keys, hosts, weights = np.concatenate(keys), np.concatenate(hosts), np.concatenate(weights)
    keep = weights > 0
    keys, hosts, weights = keys[keep], hosts[keep], weights[keep]
    order = np.lexsort((-weights, keys))  # by voxel, heaviest share first
    keys, hosts = keys[order], hosts[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    keys, hosts = keys[first], hosts[first]
    g = (np.asarray(coords, np.int64).reshape(-1, 3) + np.asarray(origin, np.int64)) % n
    want = (g[:, 0] * n + g[:, 1]) * n + g[:, 2]
    if len(keys) == 0:
        return np.full(len(want), -1)
    at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[at] == want, hosts[at], -1)
