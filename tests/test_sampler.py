"""Rotations of the cube and the in-memory patch sampler, against direct slicing."""

import numpy as np
import pytest
import torch

from dm2gal import rotations
from dm2gal.fields import read_periodic
from dm2gal.sampler import DrawnBatches, PatchSource, WeightedDraws, normalise


def test_the_24_proper_rotations_form_the_rotation_group_of_the_cube():
    mats = [rotations.matrix(r) for r in range(rotations.N_ROTATIONS)]
    assert rotations.N_ROTATIONS == 24
    assert np.array_equal(mats[0], np.eye(3, dtype=int))
    assert len({m.tobytes() for m in mats}) == 24
    assert all(round(np.linalg.det(m)) == 1 and np.array_equal(m @ m.T, np.eye(3)) for m in mats)
    keys = {m.tobytes() for m in mats}
    assert all((a @ b).tobytes() in keys for a in mats for b in mats)  # closed under composition


@pytest.mark.parametrize("r", range(24))
def test_rotate_follows_the_matrix_on_every_channel(r):
    p, h = 5, 2
    x = torch.arange(2 * p ** 3, dtype=torch.float32).reshape(2, p, p, p)
    y = rotations.rotate(x, r)
    m = rotations.matrix(r)
    rng = np.random.default_rng(r)
    for _ in range(10):
        d = rng.integers(-h, h + 1, 3)
        src = m @ d + h
        for c in range(2):
            assert y[c][tuple(d + h)] == x[c][tuple(src)]


@pytest.fixture(scope="module")
def fields():
    rng = np.random.default_rng(1)
    n = 12
    return [rng.lognormal(20, 2, (n, n, n)).astype(np.float32), rng.lognormal(22, 1, (n, n, n)).astype(np.float32)]


def test_patches_equal_rotated_periodic_cut_outs_of_the_normalised_fields(fields):
    mean, std = [20.0, 22.0], [1.5, 0.7]
    src = PatchSource.from_arrays(fields, mean, std, device="cpu", slab=5)
    n, p = 12, 7
    centres = torch.tensor([[0, 0, 0], [11, 5, 1], [3, 11, 10], [6, 6, 6]] * 6)
    rots = torch.arange(24)
    batch = src.cut(centres, rots, p)
    assert batch.shape == (24, 2, p, p, p)
    assert batch.is_contiguous(memory_format=torch.channels_last_3d)
    for b in range(24):
        for c in range(2):
            ref = normalise(read_periodic(fields[c].astype(np.float64), centres[b].numpy() - p // 2, (p,) * 3),
                            mean[c], std[c])
            expected = rotations.rotate(torch.from_numpy(ref), int(rots[b]))
            assert torch.allclose(batch[b, c].double(), expected, atol=1e-5)
    unrotated = src.cut(centres[:4], None, p)
    assert torch.equal(unrotated, src.cut(centres[:4], torch.zeros(4, dtype=torch.int64), p))
    with pytest.raises(ValueError, match="odd"):
        src.cut(centres, rots, 6)
    assert n == src.n


def test_patches_of_stacked_boxes_wrap_within_their_own_box(fields):
    """Box b of a several-box source cuts exactly what a one-box source of its fields cuts, also
    at its faces, where the wrap must stay inside the box and not reach the neighbouring one."""
    mean, std = [20.0, 22.0], [1.5, 0.7]
    other = [np.roll(f, 5, axis=0) * 3.0 for f in fields]
    both = PatchSource.from_boxes([fields, other], mean, std, device="cpu", slab=5)
    assert both.boxes == 2 and both.n == 12 and both.data.shape == (24, 12, 12, 2)
    centres = torch.tensor([[0, 0, 0], [11, 5, 1], [3, 11, 10], [6, 6, 11]] * 6)
    rots = torch.arange(24)
    for b, box_fields in enumerate((fields, other)):
        alone = PatchSource.from_arrays(box_fields, mean, std, device="cpu")
        shifted = centres + torch.tensor([12 * b, 0, 0])
        assert torch.equal(both.cut(shifted, rots, 7), alone.cut(centres, rots, 7))
    with pytest.raises(ValueError, match="stacked boxes"):
        PatchSource(torch.zeros(13, 12, 12, 2))
    with pytest.raises(ValueError, match="same n"):
        PatchSource.from_boxes([fields, [f[:6, :6, :6] for f in fields]], mean, std, device="cpu")


def test_float16_storage_keeps_a_quarter_percent_in_mass(fields):
    logs = [np.log10(1.0 + f.astype(np.float64)) for f in fields]
    mean, std = [float(v.mean()) for v in logs], [float(v.std()) for v in logs]
    full = PatchSource.from_arrays(fields, mean, std, device="cpu", dtype=torch.float32)
    half = PatchSource.from_arrays(fields, mean, std, device="cpu", dtype=torch.float16)
    within = full.data.abs() < 4  # voxels within 4 standard deviations of the mean
    dlog = ((half.data.double() - full.data.double()) * torch.tensor(std, dtype=torch.float64))[within]
    assert within.float().mean() > 0.99
    assert float(dlog.abs().max()) < np.log10(1.0025)


def test_draws_are_reproducible_by_seed_and_follow_the_weights():
    n = 5
    coords = np.arange(3 * n).reshape(n, 3)
    targets = np.arange(n, dtype=np.float32)
    weights = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    a, b = WeightedDraws(coords, targets, weights, seed=7), WeightedDraws(coords, targets, weights, seed=7)
    for _ in range(3):
        for x, y in zip(a.draw(16), b.draw(16)):
            assert torch.equal(x, y)
    c = WeightedDraws(coords, targets, weights, seed=8)
    assert not torch.equal(a.draw(64)[0], c.draw(64)[0])
    centres, rot, t, iw = WeightedDraws(coords, targets, weights, seed=1).draw(200_000)
    counts = np.bincount(t.numpy().astype(int), minlength=n)
    expected = 200_000 * weights / weights.sum()
    # Multinomial counts: within 5 standard deviations of their expectation; never the zero-weight voxel.
    assert counts[3] == 0
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected + 1))
    assert torch.equal(centres, torch.as_tensor(coords)[t.long()])
    assert set(np.unique(rot.numpy())) == set(range(24))
    # Importance weights undo the sampling: the importance-weighted average of a per-voxel value
    # over draws is its plain average over the voxels that can be drawn (targets 0, 1, 2 and 4),
    # where the unweighted average over draws is pulled towards the heavy voxel (4).
    assert torch.allclose(iw, torch.as_tensor(weights.mean() / weights[t.long().numpy()], dtype=torch.float32))
    uniform = float((iw * t).mean()) / float(iw.mean())
    assert abs(uniform - np.mean([0, 1, 2, 4])) < 0.02
    assert float(t.mean()) > np.mean([0, 1, 2, 4]) + 0.5
    batches = list(DrawnBatches(WeightedDraws(coords, targets, weights, seed=1), batch=4, steps=3))
    assert len(batches) == 3 and batches[0][0].shape == (4, 3)


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        WeightedDraws(np.zeros((2, 3)), np.zeros(2), np.array([-1.0, 2.0]), seed=0)
