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


def field_reader(n: int, seed: int):
    rng = np.random.default_rng(seed)
    fields = rng.standard_normal((2, n, n, n)).astype(np.float32)

    def read(first, shape):
        return np.stack([read_periodic(f, first, shape) for f in fields])
    return read


@pytest.mark.parametrize("preset,region,tile,n_voxels", [
    ("small", 19, 8, 40),
    pytest.param("paper", 10, 8, 16, marks=pytest.mark.slow),  # 14 GFLOP per per-voxel patch
])
def test_dense_equals_per_voxel(preset, region, tile, n_voxels):
    torch.manual_seed(0)
    cfg = model_config(preset)
    net = trained_like(build_model(cfg), seed=1)
    d = dense.to_dense(net)
    assert d.patch == cfg["patch"] and d.stride == 8
    read = field_reader(48, seed=2)
    start = (40, 3, 45)  # wraps around the periodic box
    painted = np.full((region,) * 3, np.nan, np.float32)
    for (ox, oy, oz), values in dense.predict_region(d, read, start, region, tile=tile):
        painted[ox:ox + values.shape[0], oy:oy + values.shape[1], oz:oz + values.shape[2]] = values
    assert np.isfinite(painted).all()
    rng = np.random.default_rng(3)
    local = rng.integers(0, region, size=(n_voxels, 3))
    centres = (local + start) % 48
    expected = dense.predict_voxels(net, read, centres, cfg["patch"])
    got = painted[local[:, 0], local[:, 1], local[:, 2]]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert np.std(expected) > 1e-3 * scale  # the outputs differ from voxel to voxel


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
