"""TNG's Planck-2015 cosmology and the linear growth the mini-universe needs.

Background: flat LCDM without radiation, E(a) = sqrt(Omega_m a^-3 + Omega_L), so
that the N-body integrator and colossus' linear theory describe the same universe.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import quad

TNG_COSMOLOGY = {
    "Omega0": 0.3089,
    "OmegaLambda": 0.6911,
    "OmegaBaryon": 0.0486,
    "HubbleParam": 0.6774,
    "sigma8": 0.8159,
    "n_s": 0.9667,
}
"""IllustrisTNG's cosmology (Planck 2015): Omega_m, Omega_Lambda, Omega_b, h, sigma_8, n_s."""

RHO_CRIT = 2.775366e11
"""Critical density today in h^2 Msun / Mpc^3 (i.e. Msun/h per (Mpc/h)^3)."""

G_NEWTON = 4.30091727e-9
"""Newton's constant in Mpc (km/s)^2 / Msun."""


def colossus(params: dict = TNG_COSMOLOGY):
    """The colossus Cosmology for `params` (flat, no radiation), made current and returned."""
    from colossus.cosmology import cosmology  # only the tests' checks against theory need colossus

    return cosmology.setCosmology(
        "dm2gal-tng",
        params=dict(flat=True, H0=100 * params["HubbleParam"], Om0=params["Omega0"],
                    Ob0=params["OmegaBaryon"], sigma8=params["sigma8"], ns=params["n_s"],
                    relspecies=False),
        persistence="",
    )


def hubble(a, params: dict = TNG_COSMOLOGY):
    """E(a) = H(a) / H0 (dimensionless)."""
    a = np.asarray(a, dtype=np.float64)
    return np.sqrt(params["Omega0"] / a**3 + params["OmegaLambda"])


def omega_m(a, params: dict = TNG_COSMOLOGY):
    """Omega_m(a) = Omega_m a^-3 / E(a)^2."""
    a = np.asarray(a, dtype=np.float64)
    return params["Omega0"] / a**3 / hubble(a, params) ** 2


class Growth:
    """Linear growth D(a) (D(1) = 1), f = dlnD/dlna and G(a) = a^3 E(a) dD/da.

    For flat LCDM without radiation the growing mode is exact (Heath 1977):
    D(a) ~ E(a) I(a) with I(a) = int_0^a da' / (a' E(a'))^3, so dD/da follows
    analytically. G is the growth of the canonical momentum p = a^3 E dx/da of a
    particle on a Zel'dovich trajectory; it satisfies dG/da = 1.5 Omega_m D / (a^2 E),
    which the particle-mesh integrator (`pm`) uses for its kick and drift factors.
    """

    def __init__(self, params: dict = TNG_COSMOLOGY):
        self.params = params
        self.cosmo = colossus(params)
        self._norm = 1.0 / self._unnormalised(1.0)[0]

    def _integral(self, a: float) -> float:
        return quad(lambda x: (x * hubble(x, self.params)) ** -3.0, 0.0, a, epsabs=0, epsrel=1e-11)[0]

    def _unnormalised(self, a):
        a = np.atleast_1d(np.asarray(a, dtype=np.float64))
        integral = np.array([self._integral(x) for x in a.ravel()]).reshape(a.shape)
        e = hubble(a, self.params)
        de_da = -1.5 * self.params["Omega0"] / a**4 / e
        return e * integral, de_da * integral + 1.0 / (a**3 * e**2)

    def D(self, a):
        d = self._unnormalised(a)[0] * self._norm
        return d if np.ndim(a) else float(d[0])

    def dD_da(self, a):
        d = self._unnormalised(a)[1] * self._norm
        return d if np.ndim(a) else float(d[0])

    def f(self, a):
        return a * self.dD_da(a) / self.D(a)

    def G(self, a):
        return a**3 * hubble(a, self.params) * self.dD_da(a)

    def D2(self, a):
        """Second-order growth, D2 = -3/7 D^2 Omega_m(a)^(-1/143) (Bouchet et al. 1995)."""
        return -3.0 / 7.0 * self.D(a) ** 2 * omega_m(a, self.params) ** (-1.0 / 143.0)

    def f2(self, a):
        """dlnD2/dlna ~= 2 Omega_m(a)^(6/11)."""
        return 2.0 * omega_m(a, self.params) ** (6.0 / 11.0)

    def linear_power(self, k, a: float = 1.0):
        """Linear matter P(k) [(Mpc/h)^3] at scale factor a, k in h/Mpc (Eisenstein & Hu 1998)."""
        k = np.asarray(k, dtype=np.float64)
        return self.cosmo.matterPowerSpectrum(k, 0.0) * self.D(a) ** 2
