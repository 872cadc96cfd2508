"""Dense (shift-and-stitch) painting equals per-voxel evaluation of the patch network."""

import numpy as np
import pytest
import torch
from torch import nn

from dm2gal import dense
from dm2gal.fields import read_periodic
from dm2gal.model import build_model, model_config


def trained_like(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and non-trivial BatchNorm statistics, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return net.eval()


def input_fields(root, n: int, region: int, start, n_voxels: int, seed: int):
    """Zarr dark-matter and subhalo mass fields of an n^3 periodic box whose subhalo mass is
    non-zero at `n_voxels` random voxels of the region [start, start + region)^3 only
    (returned as (N, 3) region indices): the voxels honest painting paints."""
    from dm2gal.fields import field_attrs, write_field

    rng = np.random.default_rng(seed)
    dm = (10 ** rng.normal(9, 0.5, (n,) * 3)).astype(np.float32)
    local = np.unique(rng.integers(0, region, size=(n_voxels, 3)), axis=0)
    sub = np.zeros((n,) * 3, np.float32)
    sub[tuple(((local + start) % n).T)] = 10 ** rng.uniform(10, 12, len(local))
    paths = {}
    for name, data in (("dm_mass", dm), ("subhalo_mass", sub)):
        paths[name] = root / f"{name}.zarr"
        write_field(paths[name], data, field_attrs(box_size=n * 0.5, n_grid=n, source="test", snapshot=99,
                                                   mas="CIC", quantity=name), chunk=16)
    return paths, local


@pytest.mark.parametrize("preset,region,tile,n_voxels", [
    ("small", 19, 8, 40),
    pytest.param("paper", 10, 8, 16, marks=pytest.mark.slow),  # 14 GFLOP per per-voxel patch
])
def test_dense_equals_per_voxel(tmp_path, preset, region, tile, n_voxels):
    """Through the production entry point: `paint.paint` with the dense method (predict_region)
    and the per-voxel one (inference.predict) paint the same masses at the same voxels."""
    from dm2gal import paint
    from dm2gal.fields import read_field

    torch.manual_seed(0)
    cfg = model_config(preset)
    net = trained_like(build_model(cfg), seed=1)
    d = dense.to_dense(net)
    assert d.patch == cfg["patch"] and d.stride == 8
    start = (40, 3, 45)  # wraps around the periodic box
    paths, local = input_fields(tmp_path, 48, region, start, n_voxels, seed=2)
    norm = dict(input_mean=[9.0, 1.0], input_std=[0.5, 3.0], target_mean=9.0, target_std=0.6,
                input_scale=[1.0, 1e9])
    attrs = paint.painted_attrs(read_field(paths["dm_mass"])[1], start, region, "honest", "dark")
    painted = {}
    for method in ("dense", "per_voxel"):
        summary = paint.paint(net, norm, paths["dm_mass"], paths["subhalo_mass"], tmp_path / f"{method}.zarr",
                              start=start, size=region, attrs=attrs, occupancy=paint.Occupancy(threshold=1e9),
                              settings=paint.Settings(method=method, tile=tile, batch=8))
        assert summary["painted_voxels"] == len(local)
        painted[method] = read_field(tmp_path / f"{method}.zarr")[0]
    expected = np.zeros((region,) * 3, bool)
    expected[tuple(local.T)] = True
    np.testing.assert_array_equal(painted["dense"] > 0, expected)
    # the network's outputs, back from the painted masses 10^(y std + mean) (float64 from float32 masses)
    got, want = ((np.log10(painted[m][expected].astype(np.float64)) - 9.0) / 0.6 for m in ("dense", "per_voxel"))
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    assert np.std(want) > 1e-3 * scale  # the outputs differ from voxel to voxel


def test_predict_region_evaluates_only_the_tiles_select_keeps():
    """`select` sees the input at the tile's own voxels; tiles it leaves empty are not evaluated."""
    torch.manual_seed(0)
    d = dense.to_dense(trained_like(build_model(model_config("small")), seed=1))
    rng = np.random.default_rng(2)
    fields = rng.standard_normal((2, 48, 48, 48)).astype(np.float32)
    reads = []

    def read(first, shape):
        reads.append(first)
        return np.stack([read_periodic(f, first, shape) for f in fields])

    start, region, target = (40, 3, 45), 19, (41, 12, 0)  # target: region voxel (1, 9, 3)

    def select(first, centre):
        np.testing.assert_array_equal(centre, read(first, centre.shape[1:]))
        reads.pop()
        idx = np.indices(centre.shape[1:]).reshape(3, -1).T
        return (((idx + first) % 48) == target).all(axis=1).reshape(centre.shape[1:])

    tiles = list(dense.predict_region(d, read, start, region, tile=8, select=select))
    assert len(tiles) == len(reads) == len(dense.output_tiles(region, 8, 8)) == 27
    evaluated = [t for t in tiles if t.outputs is not None]
    assert len(evaluated) == 1 and evaluated[0].offset == (0, 8, 0) and evaluated[0].mask.sum() == 1
    assert evaluated[0].mask[1, 1, 3] and evaluated[0].outputs.shape == (1, 8, 8, 8)
    whole = {t.offset: t.outputs for t in dense.predict_region(d, read, start, region, tile=8)}
    np.testing.assert_array_equal(whole[(0, 8, 0)], evaluated[0].outputs)


def test_rejects_unsupported_layers():
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 27, 1))
    with pytest.raises(ValueError, match="valid, undilated"):
        dense.to_dense(net)
    with pytest.raises(ValueError, match="Flatten and Linear"):
        dense.to_dense(nn.Sequential(nn.Conv3d(2, 4, 3), nn.ReLU()))


def test_tiles_cover_the_region_once():
    tiles = dense.output_tiles((20, 16, 9), tile=10, stride=4)
    hits = np.zeros((20, 16, 9), int)
    for (x, y, z), (a, b, c) in tiles:
        hits[x:x + a, y:y + b, z:z + c] += 1
    assert (hits == 1).all()
