"""The bispectrum estimator of Pylians' `Pk_library.Bk`, computed in Fourier space.

For a cubic overdensity delta of n^3 voxels and side L [Mpc/h], with delta_k its FFT
deconvolved by the deposit window, and S_i the shell |k - k_i| < k_F (k_F = 2 pi / L):

    B(k1, k2, k3) = L^6 / n^9 * sum_x D1(x) D2(x) D3(x) / sum_x I1(x) I2(x) I3(x),

where D_i = IFFT(S_i delta_k) and I_i = IFFT(S_i) (the triangle count). Pylians
evaluates both sums in real space: six inverse FFTs per angle. Here Parseval's theorem
turns the sum over x into one over the k3 shell,

    sum_x D1 D2 D3 = n^-3 sum_{k in S3} FFT(D1 D2)(k) conj(delta_k),

so a triangle (k1, k2) costs three FFTs for all its angles (plus the field's own FFT,
shared by all triangles of `bispectra`), and the triangle counts,
which depend on the grid only, are computed once per (n, L, k1, k2, theta) and cached.
The result equals `Pk_library.Bk` to float32 rounding (tests/test_stats.py) at about a
tenth of its cost. FFTs are single precision (scipy.fft), sums double precision.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

MAS_ORDER = {"None": 0, "NGP": 1, "CIC": 2, "TSC": 3, "PCS": 4}
"""Power p of the deposit window W(k) = prod_i sinc(pi k_i / n)^p, as Pylians' MAS names."""


def _frequencies(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers of the full (x, y) axes and of the half (z) axis of an rfftn."""
    return np.fft.fftfreq(n, 1.0 / n), np.arange(n // 2 + 1, dtype=np.float64)


def _window(n: int, mas: str) -> np.ndarray:
    """The deposit window on the rfftn half grid, (n, n, n // 2 + 1) float32."""
    if mas not in MAS_ORDER:
        raise ValueError(f"unknown mass-assignment scheme {mas!r}; expected one of {sorted(MAS_ORDER)}")
    full, half = _frequencies(n)
    w = np.sinc(full / n) ** MAS_ORDER[mas]  # np.sinc(x) = sin(pi x) / (pi x)
    wz = np.sinc(half / n) ** MAS_ORDER[mas]
    return (w[:, None, None] * w[None, :, None] * wz[None, None, :]).astype(np.float32)


def _k_modulus(n: int) -> np.ndarray:
    """|k| / k_F on the rfftn half grid, (n, n, n // 2 + 1) float32."""
    full, half = _frequencies(n)
    return np.sqrt(full[:, None, None] ** 2 + full[None, :, None] ** 2
                   + half[None, None, :] ** 2).astype(np.float32)


def _half_weight(n: int) -> np.ndarray:
    """Multiplicity of each half-grid mode in the full grid along z: 1 on the kz = 0 and
    Nyquist planes, 2 elsewhere; shape (n // 2 + 1,)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def third_sides(k1: float, k2: float, theta: np.ndarray) -> np.ndarray:
    """k3 = |k1 + k2| [h/Mpc] for the angle theta [rad] between k1 and k2."""
    return np.sqrt((k2 * np.cos(theta) + k1) ** 2 + (k2 * np.sin(theta)) ** 2)


def _shell_sums(field_k: np.ndarray, kmod: np.ndarray, n: int, k1: float, k2: float,
                k3: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sum_x D1 D2 D3 for each k3 (float64, in k_F units like k1, k2), and the power
    sum_{S3} |delta_k|^2 with its mode count, both over the full grid."""
    shape = (n, n, n)
    d1 = scipy.fft.irfftn(np.where(np.abs(kmod - k1) < 1, field_k, 0), s=shape, workers=threads)
    d1 *= scipy.fft.irfftn(np.where(np.abs(kmod - k2) < 1, field_k, 0), s=shape, workers=threads)
    pair_k = scipy.fft.rfftn(d1, workers=threads)
    del d1
    near = (kmod > k3.min() - 1) & (kmod < k3.max() + 1)
    k_near, pair_near, field_near = kmod[near], pair_k[near], field_k[near]
    weight_near = np.broadcast_to(_half_weight(n), kmod.shape)[near]
    triple, power, modes = (np.empty(len(k3)) for _ in range(3))
    for i, k in enumerate(k3):
        shell = np.abs(k_near - k) < 1
        w, f = weight_near[shell], field_near[shell].astype(np.complex128)
        triple[i] = np.sum(w * (pair_near[shell] * np.conj(f)).real) / n**3
        power[i] = np.sum(w * np.abs(f) ** 2)
        modes[i] = np.sum(w)
    return triple, power, modes


@functools.lru_cache(maxsize=64)
def triangle_counts(n: int, k1: float, k2: float, k3: tuple[float, ...], threads: int = 1) -> np.ndarray:
    """sum_x I1 I2 I3 per k3 (k1, k2, k3 in units of k_F): Pylians' `triangles`; the
    number of closed triangles in the bin is this times n^6."""
    kmod = _k_modulus(n)
    return _shell_sums(np.ones(kmod.shape, np.complex64), kmod, n, k1, k2, np.asarray(k3), threads)[0]


def bispectra(delta: np.ndarray, box_size: float, triangles, theta: np.ndarray, mas: str = "CIC",
              threads: int = 1) -> list[dict]:
    """B(k1, k2, theta) [(Mpc/h)^6] of a periodic cubic overdensity (n, n, n) for each
    (k1, k2) [h/Mpc] of `triangles`, one value per angle theta [rad]; the field's FFT, its
    window and the |k| grid are computed once for all.

    Each dict is {'B', 'Q', 'k3', 'triangles', 'pk'} as Pylians' `Bk`: Q = B / (P1 P2 + P2 P3
    + P3 P1); triangles [n_theta] as Pylians' (`triangle_counts`); pk [2 + n_theta] =
    P(k1), P(k2), P(k3(theta)) [(Mpc/h)^3], the shell averages of |delta_k|^2.
    """
    n = delta.shape[0]
    if delta.shape != (n, n, n):
        raise ValueError(f"expected a cubic field, got shape {delta.shape}")
    kf = 2 * np.pi / box_size
    theta = np.asarray(theta, dtype=np.float64)
    field_k = scipy.fft.rfftn(np.asarray(delta, dtype=np.float32), workers=threads)
    field_k /= _window(n, mas)
    kmod = _k_modulus(n)
    out = []
    for k1, k2 in triangles:
        k3 = third_sides(k1, k2, theta)
        sides = np.concatenate([[k1 / kf, k2 / kf], k3 / kf])
        triple, power, modes = _shell_sums(field_k, kmod, n, k1 / kf, k2 / kf, sides, threads)
        pk = power / modes * box_size**3 / float(n) ** 6
        counts = triangle_counts(n, k1 / kf, k2 / kf, tuple(k3 / kf), threads)
        b = triple[2:] / counts * box_size**6 / float(n) ** 9
        q = b / (pk[0] * pk[1] + pk[0] * pk[2:] + pk[1] * pk[2:])
        out.append(dict(B=b, Q=q, k3=k3, triangles=counts, pk=pk))
    return out


def bispectrum(delta: np.ndarray, box_size: float, k1: float, k2: float, theta: np.ndarray,
               mas: str = "CIC", threads: int = 1) -> dict:
    """`bispectra` of one triangle (k1, k2) [h/Mpc]."""
    return bispectra(delta, box_size, [(k1, k2)], theta, mas, threads)[0]
