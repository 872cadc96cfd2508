"""Gaussian initial conditions on a particle lattice: Zel'dovich (1LPT) or 2LPT.

The linear density contrast today is drawn on the n^3 lattice from P(k) (Fourier
convention delta_k = sum_x delta(x) e^{-ikx}, <|delta_k|^2> = P(k) n^6 / V) from
real-space white noise, so the field is real by construction. Particles start at
x = q + D1 Psi1 + D2 Psi2 with Psi1 = -grad phi1, lap phi1 = delta, and
Psi2 = grad phi2, lap phi2 = sum_{i<j} (phi1_ii phi1_jj - phi1_ij^2)
(Scoccimarro 1998); momenta p = a^3 E dx/da = a^2 E (f1 D1 Psi1 + f2 D2 Psi2).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .cosmology import Growth, hubble


def wavevectors(n: int, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kx, ky, kz [h/Mpc] broadcastable to the rfftn shape (n, n, n//2+1)."""
    k = 2 * np.pi / box * scipy.fft.fftfreq(n, 1.0 / n)
    kz = 2 * np.pi / box * scipy.fft.rfftfreq(n, 1.0 / n)
    return k[:, None, None], k[None, :, None], kz[None, None, :]


def linear_density_k(n: int, box: float, growth: Growth, seed, workers: int = 2) -> np.ndarray:
    """The z=0 linear density contrast in Fourier space, rfftn layout (n, n, n//2+1), complex128."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, n, n))
    delta_k = scipy.fft.rfftn(white, workers=workers)
    del white
    kx, ky, kz = wavevectors(n, box)
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    k[0, 0, 0] = 1.0
    amp = np.sqrt(growth.linear_power(k.ravel()).reshape(k.shape) * n**3 / box**3)
    amp[0, 0, 0] = 0.0
    if n % 2 == 0:  # Nyquist planes: no well-defined displacement (their gradient vanishes on the grid)
        amp[n // 2] = amp[:, n // 2] = amp[..., n // 2] = 0.0
    delta_k *= amp
    return delta_k


def _gradient_of_inverse_laplacian(source_k: np.ndarray, box: float, n: int, workers: int) -> np.ndarray:
    """grad(lap^-1 source) in real space, (n^3, 3) float64, from source in rfftn layout."""
    kx, ky, kz = wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    phi_k = -source_k / k2
    out = np.empty((n**3, 3))
    for i, ki in enumerate((kx, ky, kz)):
        out[:, i] = scipy.fft.irfftn(1j * ki * phi_k, s=(n, n, n), workers=workers).ravel()
    return out


def lpt_displacements(delta_k: np.ndarray, box: float, order: int = 2, workers: int = 2):
    """Unit-growth displacements Psi1 (and Psi2 for order 2) on the lattice, each (n^3, 3) [Mpc/h]."""
    n = delta_k.shape[0]
    psi1 = -_gradient_of_inverse_laplacian(delta_k, box, n, workers)
    if order == 1:
        return psi1, np.zeros_like(psi1)
    kx, ky, kz = wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    phi_k = -delta_k / k2
    ks = (kx, ky, kz)

    def hessian(i, j):
        return scipy.fft.irfftn(-ks[i] * ks[j] * phi_k, s=(n, n, n), workers=workers)

    xx, yy, zz = hessian(0, 0), hessian(1, 1), hessian(2, 2)
    source = xx * yy + xx * zz + yy * zz
    del xx, yy, zz
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source -= hessian(i, j) ** 2
    psi2 = _gradient_of_inverse_laplacian(scipy.fft.rfftn(source, workers=workers), box, n, workers)
    return psi1, psi2


def lattice(n: int, box: float) -> np.ndarray:
    """Unperturbed positions q [Mpc/h], (n^3, 3), C order matching the density grid."""
    q = (np.arange(n) + 0.0) * (box / n)
    return np.stack(np.meshgrid(q, q, q, indexing="ij"), axis=-1).reshape(-1, 3)


def initial_conditions(n: int, box: float, a_init: float, growth: Growth, seed,
                       order: int = 2, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Particle positions [Mpc/h, in [0, box)] and momenta p = a^3 E dx/da [Mpc/h] at a_init."""
    delta_k = linear_density_k(n, box, growth, seed, workers)
    psi1, psi2 = lpt_displacements(delta_k, box, order, workers)
    del delta_k
    d1, d2 = float(growth.D(a_init)), float(growth.D2(a_init))
    f1, f2 = float(growth.f(a_init)), float(growth.f2(a_init))
    pos = lattice(n, box) + d1 * psi1 + d2 * psi2
    np.mod(pos, box, out=pos)
    mom = a_init**2 * float(hubble(a_init, growth.params)) * (f1 * d1 * psi1 + f2 * d2 * psi2)
    return pos, mom
