"""The dm2gal network: presets, exact receptive field, layer types, FLOP count."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dm2gal.model import PRESETS, build_model, forward_flops, latent_size, model_config, valid_patches


def test_paper_preset_is_the_papers_network():
    cfg = model_config("paper")
    assert cfg["patch"] == 65 and cfg["in_channels"] == 2
    assert len(cfg["channels"]) == 6
    assert all(k >= 5 and s == 1 for k, s in zip(cfg["kernels"][::2], cfg["strides"][::2]))
    assert all(k == 3 and s == 2 for k, s in zip(cfg["kernels"][1::2], cfg["strides"][1::2]))
    net = build_model(cfg).eval()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == 2 and linears[-1].out_features == 1
    assert linears[0].in_features == cfg["channels"][-1] * latent_size(cfg) ** 3
    with torch.no_grad():
        assert net(torch.randn(1, 2, 65, 65, 65)).shape == (1, 1)


def test_network_is_a_plain_stack_for_the_paint_stage():
    net = build_model(model_config("small"))
    assert type(net) is nn.Sequential
    allowed = (nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.Flatten, nn.Linear)
    assert all(isinstance(m, allowed) for m in net)
    assert all(m.padding == (0, 0, 0) for m in net if isinstance(m, nn.Conv3d))
    assert net.config["patch"] == PRESETS["small"]["patch"]


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_receptive_field_is_exactly_the_patch(preset):
    cfg = model_config(preset)
    if preset == "paper":  # keep the CPU cost low: same kernels and strides, fewer channels
        cfg = model_config(preset, capacity=0.25)
    net = build_model(cfg).eval()
    p = cfg["patch"]
    x = torch.randn(4, 2, p, p, p, requires_grad=True)
    net(x).sum().backward()
    touched = x.grad.abs().sum(dim=(0, 1)) > 0
    assert bool(touched.all()), "some patch voxels do not reach the output"
    # One voxel more on each side cannot be read: the network refuses those sizes.
    for bad in (p - 1, p + 1, p + 2):
        with pytest.raises(ValueError, match="does not fit"):
            model_config(preset, patch=bad)
    assert p in valid_patches(cfg, limit=10)


def test_capacity_scales_channels_and_flattened_size_follows_the_patch():
    base, wide = model_config("small"), model_config("small", capacity=2.0)
    assert wide["channels"] == [2 * c for c in base["channels"]]
    bigger = model_config("small", patch=valid_patches(base)[2])
    assert latent_size(bigger) == 3
    net = build_model(bigger)
    p = bigger["patch"]
    assert net(torch.randn(2, 2, p, p, p)).shape == (2, 1)
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("huge")


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_analytic_flops_match_torch_flop_counter(preset):
    cfg = model_config(preset, capacity=0.25 if preset == "paper" else 1.0)
    net = build_model(cfg).eval()
    p = cfg["patch"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 2, p, p, p))
    # The counter sees convolutions and matrix products; the analytic count adds the bias adds.
    assert abs(counter.get_total_flops() - forward_flops(cfg)) <= 2 * cfg["hidden"] + 2
