"""Dense painting: the patch network evaluated at every voxel of a region in one pass.

The patch network (`dm2gal.model`: valid Conv3d / BatchNorm3d / ReLU blocks, some with
stride 2, then Flatten and Linear layers) maps a P^3 patch to the value of its centre
voxel. Sliding it over a region voxel by voxel recomputes almost everything P^3 times.
Here the same weights are applied "a trous" (shift and stitch; Long et al. 2015,
Sermanet et al. 2014): every convolution runs with stride 1, and a stride-s layer
instead splits its output into s^3 interleaved sub-grids that are stacked along the
batch axis ("space to batch"), which is exactly a dilation of every later layer by s,
done with ordinary dense convolutions. The first Linear layer reads the whole final
(C, s, s, s) latent, so it becomes a Conv3d with kernel s; later Linear layers become
1x1x1 convolutions. At the end the sub-grids are stitched back in order. A region of
T^3 output voxels needs an input of (T + P - 1)^3 voxels (a halo of P // 2 before and
P - 1 - P // 2 after), and T must be a multiple of the product of the strides.

`predict_region` tiles a (periodic) region with that halo; production painting
(`dm2gal.paint.paint`, method `dense`) and `benchmarks/paint.py` both go through it.
The result equals the per-voxel evaluation (`dm2gal.inference.predict`) to float32
rounding (tested to 1e-4 relative through `dm2gal.paint.paint`). Imports only numpy
and torch.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)


def _leaves(net: nn.Module) -> list[nn.Module]:
    """The layers of a (possibly nested) nn.Sequential, in forward order."""
    if isinstance(net, nn.Sequential):
        return [leaf for child in net for leaf in _leaves(child)]
    return [net]


class _SpaceToBatch(nn.Module):
    """(N, C, X, Y, Z) -> (s^3 N, C, X/s, Y/s, Z/s): split into s^3 interleaved sub-grids."""

    def __init__(self, s: int):
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, X, Y, Z = x.shape
        s = self.s
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) and c > 1 \
            else torch.contiguous_format
        x = x.reshape(n, c, X // s, s, Y // s, s, Z // s, s).permute(3, 5, 7, 0, 1, 2, 4, 6)
        return x.reshape(s ** 3 * n, c, X // s, Y // s, Z // s).contiguous(memory_format=fmt)


def _batch_to_space(x: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of `_SpaceToBatch` for the sub-grids it stacked last (outermost)."""
    sn, c, X, Y, Z = x.shape
    n = sn // s ** 3
    x = x.reshape(s, s, s, n, c, X, Y, Z).permute(3, 4, 5, 0, 6, 1, 7, 2)
    return x.reshape(n, c, X * s, Y * s, Z * s)


class DenseNet(nn.Module):
    """The patch network rewritten to output every voxel of its input's valid region.

    Input (N, C, X + P - 1, ...) with each output length X a multiple of `stride`;
    output (N, out, X, Y, Z): voxel v is the patch network applied to the patch whose
    first voxel is v (so whose centre is v + P // 2).
    """

    def __init__(self, layers: list[nn.Module], strides: list[int], patch: int):
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.strides = strides
        self.stride = math.prod(strides)
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = tuple(d - self.patch + 1 for d in x.shape[2:])
        if any(o <= 0 or o % self.stride for o in out):
            raise ValueError(f"dense input {tuple(x.shape[2:])} gives outputs {out}: each must be a positive "
                             f"multiple of {self.stride} (input = output + {self.patch - 1})")
        y = self.body(x)
        for s in reversed(self.strides):
            y = _batch_to_space(y, s)
        return y


def to_dense(net: nn.Module) -> DenseNet:
    """The shift-and-stitch form of a patch network (an eval-mode copy sharing no state).

    Supports Conv3d (no padding, any stride, dilation 1), BatchNorm3d/1d, elementwise
    activations, Dropout, Flatten and Linear, as a flat or nested nn.Sequential.
    Raises ValueError naming any other layer.
    """
    layers: list[nn.Module] = []
    strides: list[int] = []
    receptive, jump = 1, 1  # receptive field and input voxels per latent voxel
    channels = latent = None
    flattened = False
    for layer in _leaves(net):
        if isinstance(layer, nn.Conv3d) and not flattened:
            if any(p != 0 for p in layer.padding) or any(d != 1 for d in layer.dilation) \
                    or len(set(layer.kernel_size)) != 1 or len(set(layer.stride)) != 1:
                raise ValueError(f"dense painting needs valid, undilated, cubic convolutions; got {layer}")
            k, s = layer.kernel_size[0], layer.stride[0]
            conv = nn.Conv3d(layer.in_channels, layer.out_channels, k, groups=layer.groups,
                             bias=layer.bias is not None)
            conv.load_state_dict(layer.state_dict())
            layers.append(conv)
            receptive += (k - 1) * jump
            if s > 1:
                layers.append(_SpaceToBatch(s))
                strides.append(s)
                jump *= s
            channels = layer.out_channels
        elif isinstance(layer, (nn.BatchNorm3d, nn.BatchNorm1d)):
            bn = nn.BatchNorm3d(layer.num_features, eps=layer.eps, affine=layer.affine,
                                track_running_stats=layer.track_running_stats)
            bn.load_state_dict(layer.state_dict())
            layers.append(bn)
        elif isinstance(layer, _ELEMENTWISE):
            layers.append(nn.Identity() if isinstance(layer, nn.Dropout) else layer)
        elif isinstance(layer, nn.Flatten) and not flattened:
            flattened = True
        elif isinstance(layer, nn.Linear) and flattened:
            if latent is None:  # the first Linear reads the whole (C, s, s, s) latent
                latent = round((layer.in_features / channels) ** (1 / 3))
                if channels * latent ** 3 != layer.in_features:
                    raise ValueError(f"{layer} does not read a cubic latent of {channels} channels")
                k = latent
            else:
                k = 1
            conv = nn.Conv3d(layer.in_features // k ** 3, layer.out_features, k, bias=layer.bias is not None)
            conv.weight.data.copy_(layer.weight.data.view(conv.weight.shape))
            if layer.bias is not None:
                conv.bias.data.copy_(layer.bias.data)
            layers.append(conv)
            receptive += (k - 1) * jump
        else:
            raise ValueError(f"dense painting does not support layer {layer!r} at this position")
    if not flattened or latent is None:
        raise ValueError("expected a patch network ending in Flatten and Linear layers")
    dense = DenseNet(layers, strides, receptive)
    return dense.eval()


def output_tiles(size, tile: int, stride: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """(offset, shape) of output tiles covering a region of `size` (int or 3) voxels.

    `tile` is rounded down to a multiple of `stride` (at least `stride`).
    """
    size = (size,) * 3 if np.isscalar(size) else tuple(int(s) for s in size)
    tile = max(stride, tile // stride * stride)
    ranges = [[(a, min(tile, s - a)) for a in range(0, s, tile)] for s in size]
    return [((x[0], y[0], z[0]), (x[1], y[1], z[1])) for x in ranges[0] for y in ranges[1] for z in ranges[2]]


class Tile(NamedTuple):
    """One output tile of `predict_region`.

    offset (3,): first voxel of the tile inside the region; shape (3,): its extent;
    mask: the (shape) voxels `select` asked for (None without `select`); outputs: the
    network's raw outputs (K, *shape) float32, None where `select` asked for none (the
    tile was not evaluated).
    """

    offset: tuple[int, int, int]
    shape: tuple[int, int, int]
    mask: np.ndarray | None
    outputs: np.ndarray | None


@torch.no_grad()
def predict_region(dense: DenseNet, read_input: Callable[[tuple, tuple], np.ndarray], start, size,
                   tile: int = 64, device: str | torch.device = "cpu",
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   select: Callable[[tuple, np.ndarray], np.ndarray] | None = None,
                   autocast: bool | None = None, channels_last: bool | None = None) -> Iterator[Tile]:
    """Evaluate the network at every voxel of the region [start, start + size) in tiles.

    `read_input(first, shape)` returns the (C, *shape) input whose first voxel is
    `first` (periodic reads are the caller's business); `transform` maps it, as a
    float32 tensor on `device`, to the network's input (e.g. the sampler's
    normalisation of raw masses; default: none). `select(first, centre)`, given the
    first voxel of an output tile (parent-grid indices) and the (C, *shape) input at
    the tile's own voxels (before `transform`), returns the bool mask of the voxels
    wanted there; a tile where it is all False is not evaluated. Yields one `Tile` per
    output tile (`output_tiles` order). `autocast` runs in bf16 autocast and
    `channels_last` in the channels_last_3d memory format; None means on a GPU only.
    """
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    autocast = on_gpu if autocast is None else autocast
    channels_last = on_gpu if channels_last is None else channels_last
    half = dense.patch // 2
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    dense = dense.to(device=device, memory_format=fmt).eval()
    for offset, shape in output_tiles(size, tile, dense.stride):
        padded = tuple(-(-t // dense.stride) * dense.stride for t in shape)  # round up, crop after
        first = tuple(int(s) + o - half for s, o in zip(start, offset))
        x = read_input(first, tuple(p + dense.patch - 1 for p in padded))
        mask = None
        if select is not None:
            centre = x[:, half:half + shape[0], half:half + shape[1], half:half + shape[2]]
            mask = np.asarray(select(tuple(f + half for f in first), centre), dtype=bool)
            if not mask.any():
                yield Tile(offset, shape, mask, None)
                continue
        t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))[None].to(device)
        if transform is not None:
            t = transform(t[0])[None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            y = dense(t.contiguous(memory_format=fmt))
        outputs = y[0, :, :shape[0], :shape[1], :shape[2]].float().cpu().numpy()
        yield Tile(offset, shape, mask, outputs)
