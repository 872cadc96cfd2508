"""Periodic friends-of-friends groups (Davis et al. 1985) with a k-d tree and sparse graph components."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def wrap(pos: np.ndarray, box: float) -> np.ndarray:
    """Positions folded into [0, box) in place (np.mod can round up to exactly box)."""
    np.mod(pos, box, out=pos)
    pos[pos >= box] = 0.0
    return pos


def periodic_tree(pos: np.ndarray, box: float) -> cKDTree:
    """A k-d tree of positions in [0, box) with periodic distances."""
    return cKDTree(pos, boxsize=box, balanced_tree=False, compact_nodes=False)


def linking_length(b: float, n_particles: int, box: float) -> float:
    """b times the mean interparticle separation box / n_particles^(1/3) [Mpc/h]."""
    return b * box / n_particles ** (1.0 / 3.0)


def friends_of_friends(pos: np.ndarray, box: float, link: float, min_members: int,
                       tree: cKDTree | None = None) -> np.ndarray:
    """Group label of every particle: 0, 1, ... by decreasing membership, -1 outside groups.

    Two particles closer than `link` [Mpc/h] (periodic) are friends; groups are the
    connected components with at least `min_members` particles. Ties in size keep
    the order of their lowest particle index, so labels are deterministic.
    """
    tree = periodic_tree(pos, box) if tree is None else tree
    pairs = tree.query_pairs(link, output_type="ndarray")
    n = len(pos)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    del pairs
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_comp)
    first = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    keep = np.flatnonzero(sizes >= min_members)
    keep = keep[np.lexsort((first[keep], -sizes[keep]))]
    relabel = np.full(n_comp, -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))
    return relabel[comp]
