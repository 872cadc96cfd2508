"""The dm2gal network: a plain stack of valid 3D convolutions read by two dense layers.

Input: (B, 2, P, P, P) normalised dark-matter and subhalo mass patches; output
(B, `outputs`): for the centre voxel, the normalised log10 stellar mass (one output, the
paper's head) or its mean and the log of its scatter (two outputs, the probabilistic head
of the unbiased objective; see `dm2gal.inference.Prediction`). Stages of conv-BN-ReLU blocks
alternate a large kernel with stride 1 and kernel 3 with stride 2 (Kasmanoff et al.
2020); after the last stage the (C, s, s, s) latent is flattened and passed through
two fully connected layers. Convolutions are unpadded ("valid"), and the patch size
must make every strided convolution cover its input exactly, so the receptive field
of the output is the whole patch, centred on the centre voxel. That is what lets the
paint stage turn strided layers into dilated ones and paint densely by shift and
stitch. The network is an `nn.Sequential` of Conv3d/BatchNorm3d/ReLU, then
Flatten/Linear/ReLU/Linear. The architecture arithmetic (presets, patch sizes, strides,
flops, the head's outputs) is plain Python, so the Snakefile loads it without torch;
`build_model` imports torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

PRESETS = {
    # The paper's network: 65^3 input, six stages, the latent is 128 x 3^3.
    "paper": dict(patch=65, channels=[16, 32, 32, 64, 64, 128], kernels=[7, 3, 7, 3, 5, 3],
                  strides=[1, 2, 1, 2, 1, 2], blocks=[1, 1, 1, 1, 1, 1], hidden=128),
    # The CPU default for the mini-universe: 21^3 input, the same six-stage stride pattern with
    # kernel-3 (and one pointwise) stride-1 stages, so it trains in minutes on two cores.
    "small": dict(patch=21, channels=[4, 8, 8, 16, 16, 32], kernels=[3, 3, 3, 3, 1, 3],
                  strides=[1, 2, 1, 2, 1, 2], blocks=[1, 1, 1, 1, 1, 1], hidden=32),
}
IN_CHANNELS = 2
"""Dark-matter mass and gravity-only subhalo mass."""
HEAD_OUTPUTS = (1, 2)
"""1: normalised log10 M* (the paper); 2: its mean and log scatter (Gaussian in log10 M*)."""
OBJECTIVES = ("unbiased", "paper")
"""train.objective: the probabilistic head's importance-weighted NLL, or the paper's MSE
(`dm2gal.objective`)."""


def head_outputs(objective: str) -> int:
    """Number of network outputs the objective needs."""
    if objective not in OBJECTIVES:
        raise ValueError(f"train.objective must be one of {OBJECTIVES}, got {objective!r}")
    return 2 if objective == "unbiased" else 1


def model_config(preset: str = "small", capacity: float = 1.0, outputs: int = 1, query_channels: int = 0,
                 **overrides) -> dict:
    """The full architecture description: a preset, its overrides (None = keep), a
    capacity factor multiplying every channel count and the hidden width, the
    number of head outputs (HEAD_OUTPUTS), and the query channels the galaxy painter
    adds to the two input fields (`dm2gal.sampler.with_query`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    if outputs not in HEAD_OUTPUTS:
        raise ValueError(f"the head has {HEAD_OUTPUTS} outputs, got {outputs}")
    cfg = dict(PRESETS[preset], outputs=int(outputs))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["channels"] = [max(1, round(c * capacity)) for c in cfg["channels"]]
    cfg["hidden"] = max(1, round(cfg["hidden"] * capacity))
    cfg["in_channels"] = IN_CHANNELS + int(query_channels)
    latent_size(cfg)  # validates
    return cfg


def configured(model_section: dict) -> dict:
    """The architecture a config's `model` section describes (preset plus overrides)."""
    return model_config(model_section.get("preset", "small"),
                        **{k: v for k, v in model_section.items() if k != "preset"})


def configured_patch(model_section: dict) -> int:
    """The patch edge the config's `model` section describes."""
    return int(configured(model_section)["patch"])


def total_stride(cfg: dict) -> int:
    """The product of the strides: the dense painter's output grid step (`dm2gal.dense`)."""
    return math.prod(s for k, s, _, _ in _layers(cfg))


def _layers(cfg: dict):
    """(kernel, stride, in_channels, out_channels) of every convolution, in order."""
    lengths = {len(cfg[k]) for k in ("channels", "kernels", "strides", "blocks")}
    if len(lengths) != 1:
        raise ValueError("model channels, kernels, strides and blocks must have one entry per stage")
    c_in = cfg.get("in_channels", IN_CHANNELS)
    for c, k, s, nb in zip(cfg["channels"], cfg["kernels"], cfg["strides"], cfg["blocks"]):
        for b in range(nb):
            yield k, (s if b == 0 else 1), c_in, c
            c_in = c


def latent_size(cfg: dict) -> int:
    """Edge s of the last stage's output for patch P; raises unless every convolution
    covers its input exactly (odd kernels; (size - k) divisible by the stride)."""
    size = cfg["patch"]
    for i, (k, s, _, _) in enumerate(_layers(cfg)):
        if k % 2 != 1 or s < 1:
            raise ValueError(f"convolution {i}: kernel {k} must be odd and stride {s} >= 1")
        if size < k or (size - k) % s:
            valid = ", ".join(str(p) for p in valid_patches(cfg, limit=5))
            raise ValueError(f"patch {cfg['patch']} does not fit the network exactly (convolution {i} sees "
                             f"{size} voxels with kernel {k}, stride {s}); patch sizes that fit: {valid}")
        size = (size - k) // s + 1
    return size


def valid_patches(cfg: dict, limit: int = 5) -> list[int]:
    """The smallest `limit` patch sizes the architecture covers exactly."""
    out = []
    for latent in range(1, 2 * limit + 2):
        size = latent
        for k, s, _, _ in reversed(list(_layers(cfg))):
            size = (size - 1) * s + k
        out.append(size)
    return sorted(set(out))[:limit]


def build_model(cfg: dict) -> nn.Sequential:
    """The network for an architecture description from `model_config` (kept as `net.config`)."""
    from torch import nn

    s = latent_size(cfg)
    layers: list[nn.Module] = []
    for k, stride, c_in, c_out in _layers(cfg):
        layers += [nn.Conv3d(c_in, c_out, k, stride=stride, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
    layers += [nn.Flatten(), nn.Linear(cfg["channels"][-1] * s ** 3, cfg["hidden"]), nn.ReLU(inplace=True),
               nn.Linear(cfg["hidden"], cfg.get("outputs", 1))]
    net = nn.Sequential(*layers)
    net.config = dict(cfg)  # the architecture travels with the network (checkpoints, inference)
    return net


def forward_flops(cfg: dict) -> int:
    """Multiply-adds x 2 of one forward pass for one sample (convolutions and linear layers)."""
    size, flops = cfg["patch"], 0
    for k, s, c_in, c_out in _layers(cfg):
        size = (size - k) // s + 1
        flops += 2 * size ** 3 * k ** 3 * c_in * c_out
    flops += 2 * cfg["channels"][-1] * latent_size(cfg) ** 3 * cfg["hidden"] + 2 * cfg["hidden"] * cfg.get("outputs", 1)
    return flops


def n_parameters(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())
