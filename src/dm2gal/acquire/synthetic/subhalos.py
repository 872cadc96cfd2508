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
    n = len(pos)
    tree = periodic_tree(pos, box) if tree is None else tree
    group = friends_of_friends(pos, box, linking_length(fof_b, n, box), fof_min, tree)
    n_groups = int(group.max()) + 1

    members = np.flatnonzero(group >= 0)
    clump_m = friends_of_friends(pos[members], box, linking_length(sub_b, n, box), sub_min)
    clump = np.full(n, -1, dtype=np.int64)
    clump[members] = clump_m
    n_clumps = int(clump_m.max()) + 1 if len(members) else 0
    clump_first = np.full(n_clumps, n, dtype=np.int64)
    np.minimum.at(clump_first, clump[members[clump_m >= 0]], members[clump_m >= 0])
    clump_group = group[clump_first]
    clump_size = np.bincount(clump[clump >= 0], minlength=n_clumps)

    # clumps are labelled by decreasing size: the first clump met in each group is its core
    order = np.lexsort((np.arange(n_clumps), clump_group))
    is_core = np.zeros(n_clumps, dtype=bool)
    first_of_group = np.r_[True, clump_group[order][1:] != clump_group[order][:-1]]
    is_core[order[first_of_group]] = True
    satellites = order[~is_core[order]]  # grouped by group, decreasing size inside each group
    sat_group = clump_group[satellites]

    # subhalo table: per group its central, then its satellites
    n_sats = np.bincount(sat_group, minlength=n_groups)
    nsubs = 1 + n_sats
    first_sub = np.r_[0, np.cumsum(nsubs)[:-1]]
    n_subs = int(nsubs.sum())
    sat_index = first_sub[sat_group] + 1 + (np.arange(len(satellites))
                                            - np.searchsorted(sat_group, sat_group, side="left"))
    sub_of_clump = np.full(n_clumps, -1, dtype=np.int64)
    sub_of_clump[satellites] = sat_index

    particle_sub = np.full(n, -1, dtype=np.int64)
    particle_sub[members] = first_sub[group[members]]
    in_sat = np.flatnonzero(clump >= 0)
    in_sat = in_sat[sub_of_clump[clump[in_sat]] >= 0]
    particle_sub[in_sat] = sub_of_clump[clump[in_sat]]

    # centres: satellites and cores from their clumps; groups without a clump from all members
    clump_centre = periodic_centres(pos, clump, n_clumps, box)
    group_centre = periodic_centres(pos, group, n_groups, box)
    core_of_group = np.full(n_groups, -1, dtype=np.int64)
    core_of_group[clump_group[is_core]] = np.flatnonzero(is_core)
    has_core = core_of_group >= 0
    group_centre[has_core] = clump_centre[core_of_group[has_core]]
    sub_pos = np.empty((n_subs, 3))
    sub_pos[first_sub] = group_centre
    sub_pos[sat_index] = clump_centre[satellites]

    sub_len = np.bincount(particle_sub[particle_sub >= 0], minlength=n_subs)
    group_len = np.bincount(group[members], minlength=n_groups)
    sub_grnr = np.repeat(np.arange(n_groups), nsubs)
    sub_vel = np.stack([np.bincount(particle_sub[members], weights=vel[members, i], minlength=n_subs)
                        for i in range(3)], 1) / sub_len[:, None]

    def by_type(values, dtype):
        out = np.zeros((len(values), 6), dtype=dtype)
        out[:, 1] = values
        return out

    halos = {
        "GroupPos": group_centre,
        "GroupMass": group_len * particle_mass,
        "GroupMassType": by_type(group_len * particle_mass, np.float64),
        "GroupLen": group_len.astype(np.int32),
        "GroupLenType": by_type(group_len, np.int32),
        "GroupNsubs": nsubs.astype(np.int32),
        "GroupFirstSub": first_sub.astype(np.int32),
        "Group_M_Crit200": m_crit200(pos, group, group_centre, box, particle_mass),
    }
    subhalos = {
        "SubhaloPos": sub_pos,
        "SubhaloVel": sub_vel,
        "SubhaloMass": sub_len * particle_mass,
        "SubhaloMassType": by_type(sub_len * particle_mass, np.float64),
        "SubhaloLen": sub_len.astype(np.int32),
        "SubhaloLenType": by_type(sub_len, np.int32),
        "SubhaloGrNr": sub_grnr.astype(np.int32),
        "SubhaloVmax": vmax(pos, particle_sub, sub_pos, box, particle_mass, r_min),
    }
    key = np.where(particle_sub >= 0, particle_sub, n_subs)
    return halos, subhalos, np.argsort(key, kind="stable")
