"""The 24 proper rotations of the cube, as signed axis permutations.

A rotation `r` maps the patch offset `d` (relative to the centre voxel) to the field
offset `R d` with `(R d)[i] = signs[r, i] * d[axes[r, i]]`: field axis `i` follows
patch axis `axes[r, i]`, reversed where `signs[r, i] = -1`. These are the signed
permutation matrices of determinant +1 (no reflections). Rotation 0 is the identity.
The sampler applies them through its index arithmetic (no extra copy); `rotate`
applies them to stored patches, for tests and checks. Imports only numpy and torch.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


def _proper_rotations() -> tuple[np.ndarray, np.ndarray]:
    axes, signs = [], []
    for perm in itertools.permutations(range(3)):
        for sgn in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3), dtype=int)
            matrix[np.arange(3), perm] = sgn
            if round(np.linalg.det(matrix)) == 1:
                axes.append(perm)
                signs.append(sgn)
    return np.array(axes, dtype=np.int64), np.array(signs, dtype=np.int64)


AXES, SIGNS = _proper_rotations()
"""(24, 3) int arrays: field axis i reads patch axis AXES[r, i] with sign SIGNS[r, i]."""
N_ROTATIONS = len(AXES)


def matrix(r: int) -> np.ndarray:
    """The 3x3 integer rotation matrix R of rotation `r` (field offset = R @ patch offset)."""
    m = np.zeros((3, 3), dtype=np.int64)
    m[np.arange(3), AXES[r]] = SIGNS[r]
    return m


def rotate(x: torch.Tensor, r: int) -> torch.Tensor:
    """Rotate the last three (cubic) axes of `x` by rotation `r`, every channel alike.

    Returns `y` with `y[..., p] = x[..., R p]` in centred coordinates: the same patch
    the sampler cuts when it is asked for rotation `r` around the same centre.
    """
    lead = x.dim() - 3
    # y[p] = x[R p]: x's axis i is read at signs[i] * p[axes[i]], so y's axis axes[i]
    # is x's axis i, flipped where signs[i] < 0.
    flipped = x.flip([lead + i for i in range(3) if SIGNS[r, i] < 0]) if (SIGNS[r] < 0).any() else x
    order = [0, 0, 0]
    for i in range(3):
        order[AXES[r, i]] = i
    return flipped.permute(*range(lead), *(lead + o for o in order))
