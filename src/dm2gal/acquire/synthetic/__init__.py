"""The built-in mini-universe: a paired gravity-only / "hydro" run made from scratch.

`cosmology` (TNG's Planck-2015 parameters, linear growth), `ics` (Gaussian field,
Zel'dovich / 2LPT displacements), `pm` (particle-mesh N-body), `fof`
(friends-of-friends), `subhalos` (hierarchical FoF: one central plus satellites),
`galaxies` (the hydro twin's galaxy model and baryonic effects) and `build`
(the whole chain, written in TNG layout). Equations: docs/mini-universe.md.
Library units: Mpc/h, Msun/h, km/s.
"""
