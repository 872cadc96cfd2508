"""A compact particle-mesh N-body integrator (FastPM-style kick-drift-kick in a).

Equations (comoving x [Mpc/h], time in 1/H0, p = a^3 E dx/da):
    dx/da = p / (a^3 E),   dp/da = -1.5 Omega_m / (a^2 E) grad psi,   lap psi = delta.
The density contrast is CIC-deposited on an n_mesh^3 mesh (Pylians' MAS_library),
psi with an FFT (Green's function -1/k^2 divided by one CIC window, which undoes
the deposit's smoothing; dividing by the window twice, for the read-back too,
over-amplifies near-Nyquist aliasing on a mesh finer than the particle lattice),
and its gradient with the 4-point finite difference (8 sin(kh) - sin(2kh)) / 6h, which
vanishes at the Nyquist frequency: on a mesh finer than the particle lattice the
lattice's aliased (near-Nyquist) density would otherwise give forces of second
order in the displacements that are as large as the physical ones. The force is
CIC-interpolated back to the particles (same kernel both ways: no self-force).
Kick and drift factors follow Feng et al. (2016, FastPM):
    drift a0->a1 with p at ac:  dx = p [D(a1) - D(a0)] / G(ac)
    kick  a0->a1 with force at ac: dp = -grad psi(ac) [G(a1) - G(a0)] / D(ac)
so linear (Zel'dovich) growth is exact for any step size; G = a^3 E dD/da.
"""

from __future__ import annotations

from functools import lru_cache

import MAS_library as MASL
import numpy as np
import scipy.fft
from tqdm import tqdm

from .cosmology import Growth
from .ics import wavevectors


def _float32_positions(pos: np.ndarray, box: float) -> np.ndarray:
    """Positions as float32 in [0, box), as Pylians' mass-assignment routines need."""
    p32 = pos.astype(np.float32)
    p32[p32 >= np.float32(box)] = 0.0
    return p32


def cic_deposit(pos: np.ndarray, n_mesh: int, box: float) -> np.ndarray:
    """Cloud-in-cell particle counts on a periodic (n_mesh,)*3 float32 mesh (Pylians MAS_library)."""
    mesh = np.zeros((n_mesh,) * 3, dtype=np.float32)
    MASL.MA(_float32_positions(pos, box), mesh, box, "CIC", verbose=False)
    return mesh


def cic_interpolate(field: np.ndarray, pos: np.ndarray, box: float) -> np.ndarray:
    """Cloud-in-cell read-back of a (n_mesh,)*3 field at pos, (n,) float32 (Pylians MAS_library)."""
    out = np.zeros(len(pos), dtype=np.float32)
    MASL.CIC_interp(np.ascontiguousarray(field, dtype=np.float32), box, _float32_positions(pos, box), out)
    return out


@lru_cache(maxsize=2)
def _green(n_mesh: int, box: float):
    """-1 / (k^2 W_CIC(k)) in rfftn layout (float32, zero at k = 0) and the gradient operators (complex64)."""
    kx, ky, kz = wavevectors(n_mesh, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    cell = box / n_mesh
    window = (np.sinc(kx * cell / (2 * np.pi)) * np.sinc(ky * cell / (2 * np.pi))
              * np.sinc(kz * cell / (2 * np.pi))) ** 2
    green = (-1.0 / (k2 * window)).astype(np.float32)
    green[0, 0, 0] = 0.0
    # 4-point finite-difference gradient: (8 sin(k h) - sin(2 k h)) / (6 h), zero at Nyquist
    ik = tuple((1j * (8 * np.sin(k * cell) - np.sin(2 * k * cell)) / (6 * cell)).astype(np.complex64)
               for k in (kx, ky, kz))
    return green, ik


def gravity(pos: np.ndarray, n_mesh: int, box: float, workers: int = 2) -> np.ndarray:
    """-grad psi at the particles, (n, 3) [Mpc/h], where lap psi = delta (the mesh density contrast).

    The mesh is offset by half a cell from the particle lattice (a global
    translation, so no physical effect): an unperturbed lattice then deposits a
    uniform density for n_mesh = 1 or 2 x the lattice, and small displacements
    change the deposit linearly (no lattice aliasing at early times).
    """
    pos = np.mod(pos + 0.5 * box / n_mesh, box)
    delta = cic_deposit(pos, n_mesh, box)
    delta *= n_mesh**3 / len(pos)
    delta -= 1.0
    green, ik = _green(n_mesh, float(box))
    psi_k = scipy.fft.rfftn(delta, workers=workers)
    del delta
    psi_k *= green
    force = np.empty((len(pos), 3))
    for i in range(3):
        mesh = scipy.fft.irfftn(psi_k * ik[i], s=(n_mesh,) * 3, workers=workers)
        force[:, i] = -cic_interpolate(mesh, pos, box)
    return force


def evolve(pos: np.ndarray, mom: np.ndarray, a_init: float, n_steps: int, n_mesh: int,
           box: float, growth: Growth, a_final: float = 1.0, workers: int = 2,
           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Kick-drift-kick from a_init to a_final in `n_steps` steps linear in a; updates in place.

    pos [Mpc/h, (n, 3)] and mom (p = a^3 E dx/da, (n, 3)) as from `ics.initial_conditions`.
    Returns the final (pos, mom); positions are wrapped into [0, box).
    """
    a = np.linspace(a_init, a_final, n_steps + 1)
    a_half = 0.5 * (a[1:] + a[:-1])
    D, G = growth.D, growth.G
    force = gravity(pos, n_mesh, box, workers)
    for step in tqdm(range(n_steps), desc="particle-mesh", disable=not progress, mininterval=5):
        a0, ac, a1 = a[step], a_half[step], a[step + 1]
        mom += force * float((G(ac) - G(a0)) / D(a0))
        pos += mom * float((D(a1) - D(a0)) / G(ac))
        np.mod(pos, box, out=pos)
        force = gravity(pos, n_mesh, box, workers)
        mom += force * float((G(a1) - G(ac)) / D(a1))
    return pos, mom
