"""Halo and subhalo catalogues of the gravity-only run, in TNG's fields and order.

Subhalos are found by hierarchical friends-of-friends: inside the FoF groups
(linking length b), FoF with a shorter linking length b_sub picks out the dense
clumps. In each group the clump with the most particles is the core of the
central; every other clump with at least `min_sub` particles is a satellite; all
group particles not in a satellite belong to the central (as Subfind gives
unbound-to-satellite material to the central). Each group has exactly one central.

Centres: a subhalo's position is the periodic centre of mass of its clump (the
central's core for centrals; the whole group if it has no clump); GroupPos is its
central's position. Group_M_Crit200 is the largest mass m_p k enclosed by the k
group members nearest the centre with mean density >= 200 rho_crit.
SubhaloVmax is max sqrt(G M(<r) / max(r, r_min)) over member radii, r_min the
force resolution (one mesh cell).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cosmology import G_NEWTON, RHO_CRIT
from .fof import friends_of_friends, linking_length, periodic_tree


def periodic_centres(pos: np.ndarray, labels: np.ndarray, n_labels: int, box: float) -> np.ndarray:
    """Periodic centre of mass of each label 0..n_labels-1 (labels < 0 ignored), (n_labels, 3)."""
    sel = labels >= 0
    lab, p = labels[sel], pos[sel]
    ref_index = np.full(n_labels, len(p), dtype=np.int64)
    np.minimum.at(ref_index, lab, np.arange(len(p)))
    ref = p[ref_index]
    d = p - ref[lab]
    d -= box * np.round(d / box)
    counts = np.bincount(lab, minlength=n_labels)
    mean = np.stack([np.bincount(lab, weights=d[:, i], minlength=n_labels) for i in range(3)], 1)
    return np.mod(ref + mean / counts[:, None], box)


def _radial_ranks(pos: np.ndarray, labels: np.ndarray, centres: np.ndarray, box: float):
    """For members (labels >= 0): (label, radius to its centre, 1-based rank by radius), sorted."""
    sel = np.flatnonzero(labels >= 0)
    lab = labels[sel]
    d = pos[sel] - centres[lab]
    d -= box * np.round(d / box)
    r = np.sqrt((d**2).sum(1))
    order = np.lexsort((r, lab))
    lab, r = lab[order], r[order]
    start = np.searchsorted(lab, lab, side="left")
    rank = np.arange(len(lab)) - start + 1
    return lab, r, rank


def m_crit200(pos, labels, centres, box, particle_mass) -> np.ndarray:
    """M200c [Msun/h] of each labelled set from its own members around `centres`."""
    lab, r, rank = _radial_ranks(pos, labels, centres, box)
    with np.errstate(divide="ignore"):
        density = rank * particle_mass / (4.0 / 3.0 * np.pi * r**3)
    ok = density >= 200.0 * RHO_CRIT
    best = np.zeros(len(centres), dtype=np.int64)
    np.maximum.at(best, lab[ok], rank[ok])
    return best * particle_mass


def vmax(pos, labels, centres, box, particle_mass, r_min) -> np.ndarray:
    """Maximum circular velocity [km/s] of each labelled set, radii below r_min [Mpc/h] counted as r_min."""
    lab, r, rank = _radial_ranks(pos, labels, centres, box)
    v = np.sqrt(G_NEWTON * rank * particle_mass / np.maximum(r, r_min))
    best = np.zeros(len(centres))
    np.maximum.at(best, lab, v)
    return best


class _Hierarchy(NamedTuple):
    """Who belongs to what in a gravity-only snapshot of n particles (integer labels, -1: none)."""

    group: np.ndarray
    """(n,) FoF group of each particle."""
    members: np.ndarray
    """Indices of the particles in a group."""
    clump: np.ndarray
    """(n,) sub-FoF clump of each particle, clumps labelled by decreasing size."""
    clump_group: np.ndarray
    """(n_clumps,) group of each clump."""
    is_core: np.ndarray
    """(n_clumps,) bool: the clump is its group's largest (the central's core)."""
    satellites: np.ndarray
    """Clumps that are satellites, grouped by group, decreasing size inside each group."""
    nsubs: np.ndarray
    """(n_groups,) subhalos per group: the central and its satellites."""
    first_sub: np.ndarray
    """(n_groups,) index of each group's central in the subhalo table."""
    sat_index: np.ndarray
    """Subhalo index of each of `satellites`."""
    particle_sub: np.ndarray
    """(n,) subhalo of each particle."""


def _clumps(pos: np.ndarray, group: np.ndarray, members: np.ndarray, box: float, sub_b: float,
            sub_min: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-FoF clumps (linking length `sub_b`, >= `sub_min` particles) of the group members:
    (clump label (n,) per particle, -1 outside clumps; group of each clump (n_clumps,))."""
    n = len(pos)
    clump_m = friends_of_friends(pos[members], box, linking_length(sub_b, n, box), sub_min)
    clump = np.full(n, -1, dtype=np.int64)
    clump[members] = clump_m
    n_clumps = int(clump_m.max()) + 1 if len(members) else 0
    clump_first = np.full(n_clumps, n, dtype=np.int64)
    np.minimum.at(clump_first, clump[members[clump_m >= 0]], members[clump_m >= 0])
    return clump, group[clump_first]


def _cores(clump_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_core (n_clumps,) bool, satellite clumps): clumps are labelled by decreasing size, so
    the first clump met in each group is its core; the others are satellites, by group."""
    n_clumps = len(clump_group)
    order = np.lexsort((np.arange(n_clumps), clump_group))
    is_core = np.zeros(n_clumps, dtype=bool)
    first_of_group = np.r_[True, clump_group[order][1:] != clump_group[order][:-1]]
    is_core[order[first_of_group]] = True
    return is_core, order[~is_core[order]]


def _hierarchy(pos: np.ndarray, box: float, fof_b: float, fof_min: int, sub_b: float, sub_min: int,
               tree) -> _Hierarchy:
    """Groups, clumps and the subhalo table (per group its central, then its satellites) of
    particles `pos` [Mpc/h, (n, 3)]; linking lengths in units of the mean separation."""
    n = len(pos)
    group = friends_of_friends(pos, box, linking_length(fof_b, n, box), fof_min, tree)
    n_groups = int(group.max()) + 1
    members = np.flatnonzero(group >= 0)
    clump, clump_group = _clumps(pos, group, members, box, sub_b, sub_min)
    is_core, satellites = _cores(clump_group)
    sat_group = clump_group[satellites]

    nsubs = 1 + np.bincount(sat_group, minlength=n_groups)
    first_sub = np.r_[0, np.cumsum(nsubs)[:-1]]
    sat_index = first_sub[sat_group] + 1 + (np.arange(len(satellites))
                                            - np.searchsorted(sat_group, sat_group, side="left"))
    sub_of_clump = np.full(len(clump_group), -1, dtype=np.int64)
    sub_of_clump[satellites] = sat_index
    particle_sub = np.full(n, -1, dtype=np.int64)
    particle_sub[members] = first_sub[group[members]]
    in_sat = np.flatnonzero(clump >= 0)
    in_sat = in_sat[sub_of_clump[clump[in_sat]] >= 0]
    particle_sub[in_sat] = sub_of_clump[clump[in_sat]]
    return _Hierarchy(group, members, clump, clump_group, is_core, satellites, nsubs, first_sub, sat_index,
                      particle_sub)


def _centres(pos: np.ndarray, h: _Hierarchy, box: float) -> tuple[np.ndarray, np.ndarray]:
    """(group centres (n_groups, 3), subhalo positions (n_subs, 3)) [Mpc/h]: satellites and cores
    from their clumps; groups without a clump from all their members."""
    n_clumps, n_groups = len(h.clump_group), len(h.nsubs)
    clump_centre = periodic_centres(pos, h.clump, n_clumps, box)
    group_centre = periodic_centres(pos, h.group, n_groups, box)
    core_of_group = np.full(n_groups, -1, dtype=np.int64)
    core_of_group[h.clump_group[h.is_core]] = np.flatnonzero(h.is_core)
    has_core = core_of_group >= 0
    group_centre[has_core] = clump_centre[core_of_group[has_core]]
    sub_pos = np.empty((int(h.nsubs.sum()), 3))
    sub_pos[h.first_sub] = group_centre
    sub_pos[h.sat_index] = clump_centre[h.satellites]
    return group_centre, sub_pos


def _by_type(values: np.ndarray, dtype) -> np.ndarray:
    """(len(values), 6) per-particle-type table: `values` in the dark-matter column (type 1)."""
    out = np.zeros((len(values), 6), dtype=dtype)
    out[:, 1] = values
    return out


def _halo_fields(pos: np.ndarray, h: _Hierarchy, group_centre: np.ndarray, box: float,
                 particle_mass: float) -> dict:
    """TNG Group* fields (library units) of the groups of `h`."""
    group_len = np.bincount(h.group[h.members], minlength=len(h.nsubs))
    return {
        "GroupPos": group_centre,
        "GroupMass": group_len * particle_mass,
        "GroupMassType": _by_type(group_len * particle_mass, np.float64),
        "GroupLen": group_len.astype(np.int32),
        "GroupLenType": _by_type(group_len, np.int32),
        "GroupNsubs": h.nsubs.astype(np.int32),
        "GroupFirstSub": h.first_sub.astype(np.int32),
        "Group_M_Crit200": m_crit200(pos, h.group, group_centre, box, particle_mass),
    }


def _subhalo_fields(pos: np.ndarray, vel: np.ndarray, h: _Hierarchy, sub_pos: np.ndarray, box: float,
                    particle_mass: float, r_min: float) -> dict:
    """TNG Subhalo* fields (library units) of the subhalos of `h`; velocities [km/s] are member means."""
    n_subs = len(sub_pos)
    sub_len = np.bincount(h.particle_sub[h.particle_sub >= 0], minlength=n_subs)
    sub_grnr = np.repeat(np.arange(len(h.nsubs)), h.nsubs)
    members = h.members
    sub_vel = np.stack([np.bincount(h.particle_sub[members], weights=vel[members, i], minlength=n_subs)
                        for i in range(3)], 1) / sub_len[:, None]
    return {
        "SubhaloPos": sub_pos,
        "SubhaloVel": sub_vel,
        "SubhaloMass": sub_len * particle_mass,
        "SubhaloMassType": _by_type(sub_len * particle_mass, np.float64),
        "SubhaloLen": sub_len.astype(np.int32),
        "SubhaloLenType": _by_type(sub_len, np.int32),
        "SubhaloGrNr": sub_grnr.astype(np.int32),
        "SubhaloVmax": vmax(pos, h.particle_sub, sub_pos, box, particle_mass, r_min),
    }


def dark_catalogue(pos: np.ndarray, vel: np.ndarray, particle_mass: float, box: float,
                   fof_b: float, fof_min: int, sub_b: float, sub_min: int, r_min: float,
                   tree=None):
    """FoF groups and subhalos of a gravity-only snapshot.

    pos [Mpc/h, (n, 3) in [0, box)], vel [km/s, (n, 3)], particle_mass [Msun/h];
    `r_min` is the force resolution [Mpc/h] used by `vmax`. Returns (halos,
    subhalos, order): TNG Group*/Subhalo* fields in library units, and the
    particle permutation that sorts the snapshot as TNG does (by group, then by
    subhalo in the group, particles outside groups last).
    """
    tree = periodic_tree(pos, box) if tree is None else tree
    h = _hierarchy(pos, box, fof_b, fof_min, sub_b, sub_min, tree)
    group_centre, sub_pos = _centres(pos, h, box)
    halos = _halo_fields(pos, h, group_centre, box, particle_mass)
    subhalos = _subhalo_fields(pos, vel, h, sub_pos, box, particle_mass, r_min)
    key = np.where(h.particle_sub >= 0, h.particle_sub, len(sub_pos))
    return halos, subhalos, np.argsort(key, kind="stable")
