"""Periodic two-channel patches cut from fields held in memory, by index arithmetic.

`PatchSource` holds the normalised input channels (dark-matter mass, gravity-only
subhalo mass) of one or more whole periodic boxes (training can draw from several
paired runs) as one (m n^3, C) tensor, on the GPU when it fits.
`PatchSource.cut` gathers a batch of (C, P, P, P) patches around given centre voxels,
each rotated by one of the 24 proper cube rotations, in a single `index_select`:
the rotation and the periodic wrap are folded into the indices, so neither costs a
copy. Training (`WeightedDraws`, `DrawnBatches`) and inference (`dm2gal.inference`)
both go through `cut`. Imports only numpy and torch.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from .rotations import AXES, N_ROTATIONS, SIGNS


def normalise(x, mean: float, std: float, scale: float = 1.0):
    """(log10(1 + x / scale) - mean) / std for masses x [Msun/h]: the network's input scale.

    `scale` [Msun/h] is the split's mean matter mass per voxel (1 in checkpoints from
    before it was stored), so an empty voxel and one holding a fraction of a particle
    sit next to each other instead of 10 dex apart."""
    lib = torch if isinstance(x, torch.Tensor) else np
    return (lib.log10(1.0 + x / scale) - mean) / std


def normalise_channels(x, mean: Sequence[float], std: Sequence[float], scale: Sequence[float] | None = None):
    """(C, ...) masses x [Msun/h] (numpy or torch) normalised channel by channel: channel c by
    `normalise` with mean[c], std[c] and scale[c] (None: 1), as `PatchSource.from_arrays`
    stores them. Dense painting applies it to each tile it reads."""
    lib = torch if isinstance(x, torch.Tensor) else np
    if len(x) != len(mean):
        raise ValueError(f"{len(x)} input channels but {len(mean)} normalisation constants")
    return lib.stack([normalise(x[c], float(mean[c]), float(std[c]), 1.0 if scale is None else float(scale[c]))
                      for c in range(len(mean))])


def fits_on_gpu(nbytes: int, margin: float = 0.5) -> bool:
    """True if a CUDA device is present and `nbytes` fit in `margin` of its free memory."""
    if not torch.cuda.is_available():
        return False
    free, _ = torch.cuda.mem_get_info()
    return nbytes <= margin * free


class PatchSource:
    """Normalised input fields of m periodic boxes of n^3 voxels, stored channels-last.

    `data` is an (m n, n, n, C) tensor on the device where patches are cut: the boxes stacked
    along the first axis, so voxel (x, y, z) of box b is row b n + x. Patches wrap
    periodically within their own box. Build one with `from_arrays` (one box) or
    `from_boxes`.
    """

    def __init__(self, data: torch.Tensor):
        if (data.dim() != 4 or data.shape[1] != data.shape[2] or data.shape[1] == 0
                or data.shape[0] % data.shape[1] != 0 or data.shape[0] == 0):
            raise ValueError(f"expected an (m n, n, n, C) tensor of m stacked boxes, got {tuple(data.shape)}")
        self.data = data.contiguous()
        self.n = int(data.shape[1])
        self.boxes = int(data.shape[0]) // self.n
        self.channels = int(data.shape[3])
        self._flat = self.data.view(self.boxes * self.n ** 3, self.channels)
        self._axes = torch.as_tensor(AXES, device=data.device)
        self._signs = torch.as_tensor(SIGNS, device=data.device)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @classmethod
    def from_arrays(cls, arrays: Sequence, mean: Sequence[float], std: Sequence[float], **options) -> "PatchSource":
        """Normalise and stack C cubic mass fields [Msun/h] of one box into a PatchSource:
        `from_boxes([arrays], mean, std, **options)`."""
        return cls.from_boxes([arrays], mean, std, **options)

    @classmethod
    def from_boxes(
        cls,
        boxes: Sequence[Sequence],
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        slab: int = 128,
        scale: Sequence[float] | None = None,
    ) -> "PatchSource":
        """Normalise and stack the C cubic mass fields [Msun/h] of m boxes into a PatchSource (see
        `normalise`; `scale` None means 1 for every channel): `boxes[b]` holds box b's fields,
        every one (n, n, n) with the same n, and becomes rows [b n, (b + 1) n).

        The fields are (n, n, n) arrays or anything sliceable along the first axis (e.g. Zarr
        arrays): they are read slab by slab, so only the stored tensor is held whole.
        `device=None` picks the GPU when the fields fit there, else CPU. `dtype=None` picks
        float16 on the GPU and float32 on the CPU: float16 keeps a normalised value x to
        2^-11 |x|, i.e. log10 M to 2^-11 |x| std, under 0.25 % in mass within 4 standard
        deviations of the mean (std ~ 0.5-1 dex).
        """
        n = int(boxes[0][0].shape[0])
        channels = len(boxes[0])
        if any(len(arrays) != channels or any(tuple(a.shape) != (n, n, n) for a in arrays) for arrays in boxes):
            raise ValueError("input fields must all be (n, n, n) with the same n, and every box needs the same "
                             "channels")
        if device is None:
            nbytes = len(boxes) * n ** 3 * channels * 2
            device = "cuda" if fits_on_gpu(nbytes) else "cpu"
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        data = torch.empty((len(boxes) * n, n, n, channels), dtype=dtype, device=device)
        for b, arrays in enumerate(boxes):
            for a in range(0, n, slab):
                e = min(a + slab, n)
                for c, arr in enumerate(arrays):
                    block = np.asarray(arr[a:e], dtype=np.float64)
                    s = 1.0 if scale is None else float(scale[c])
                    data[b * n + a:b * n + e, ..., c] = torch.from_numpy(
                        normalise(block, mean[c], std[c], s)).to(device, dtype)
        return cls(data)

    def linear_index(self, centres: torch.Tensor, rotations: torch.Tensor, patch: int) -> torch.Tensor:
        """(B, P, P, P) int64 flat voxel index of each rotated, periodically wrapped patch.

        `centres` (B, 3) voxel indices on the stacked grid (the first in [0, m n): box
        centres[:, 0] // n), `rotations` (B,) in [0, 24). Patch voxel p (centred offset
        d = p - P // 2) reads voxel centre + R d of the centre's box, wrapped modulo n.
        """
        if patch % 2 != 1:
            raise ValueError(f"patch size must be odd (a centre voxel), got {patch}")
        dev = self.device
        centres = centres.to(dev, torch.int64)
        rotations = rotations.to(dev, torch.int64)
        box_start = (centres[:, 0] // self.n) * self.n ** 3                 # (B,) first flat index of the box
        local = centres % self.n
        offsets = torch.arange(patch, device=dev) - patch // 2
        axes, signs = self._axes[rotations], self._signs[rotations]        # (B, 3)
        strides = torch.tensor([self.n * self.n, self.n, 1], device=dev)
        # Field axis i contributes a length-P index vector that runs along patch axis axes[:, i].
        per_field_axis = ((local[:, :, None] + signs[:, :, None] * offsets) % self.n) * strides[:, None]
        per_patch_axis = per_field_axis.gather(1, axes.argsort(dim=1)[:, :, None].expand(-1, -1, patch))
        return (box_start[:, None, None, None] + per_patch_axis[:, 0, :, None, None]
                + per_patch_axis[:, 1, None, :, None] + per_patch_axis[:, 2, None, None, :])

    def cut(self, centres: torch.Tensor, rotations: torch.Tensor | None, patch: int) -> torch.Tensor:
        """A (B, C, P, P, P) batch of patches (channels_last_3d layout) on this source's device.

        `rotations=None` cuts unrotated patches (inference).
        """
        if rotations is None:
            rotations = torch.zeros(len(centres), dtype=torch.int64)
        idx = self.linear_index(centres, rotations, patch)
        b = idx.shape[0]
        out = self._flat.index_select(0, idx.view(-1)).view(b, patch, patch, patch, self.channels)
        return out.permute(0, 4, 1, 2, 3)


def with_query(x: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
    """(B, C + Q, P, P, P): the patches `x` (B, C, P, P, P) with Q more channels, zero but at the
    centre voxel, where they hold `query` (B, Q) (the galaxy painter's standardised catalogue
    entry of the subhalo the patch is centred on); `x` itself without a query."""
    if query is None or query.shape[1] == 0:
        return x
    p = x.shape[2]
    extra = x.new_zeros((x.shape[0], query.shape[1], p, p, p))
    extra[:, :, p // 2, p // 2, p // 2] = query.to(x.device, x.dtype)
    return torch.cat([x, extra], 1)


class WeightedDraws:
    """Training voxels drawn with replacement by weight, each with a random rotation.

    `coords` (N, 3) voxel indices (on the stacked grid of a several-box `PatchSource`),
    `targets` (N,) normalised log10 stellar mass,
    `weights` (N,) non-negative. The draws come from a CPU generator seeded by
    `seed`, so a given seed gives the same batches on any device. Each draw carries
    an importance weight: `importance` (N,) when given, else mean(w) / w_i, with which a
    loss averaged over weighted draws has the expectation of the loss averaged uniformly
    over the training voxels (needed when the weights depend on the target). With `query`
    (N, Q) (the galaxy painter's standardised queries), each draw carries its row too.
    """

    def __init__(self, coords: np.ndarray, targets: np.ndarray, weights: np.ndarray, seed: int,
                 rotate: bool = True, importance: np.ndarray | None = None, query: np.ndarray | None = None):
        if not (len(coords) == len(targets) == len(weights)) or len(coords) == 0:
            raise ValueError("coords, targets and weights must be non-empty and of equal length")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        self.coords = torch.as_tensor(np.asarray(coords), dtype=torch.int64)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        cdf = torch.as_tensor(np.cumsum(w))
        self.cdf = cdf / cdf[-1]
        if importance is None:
            with np.errstate(divide="ignore"):
                importance = w.mean() / w  # inf only where never drawn
        self.importance = torch.as_tensor(np.asarray(importance), dtype=torch.float32)
        self.query = None if query is None else torch.as_tensor(np.asarray(query), dtype=torch.float32)
        self.rotate = rotate
        self.generator = torch.Generator().manual_seed(int(seed))

    def draw(self, batch: int) -> tuple[torch.Tensor, ...]:
        """(centres (B, 3), rotations (B,), targets (B,), importance (B,)) of `batch` weighted draws,
        and their query (B, Q) when the draws have one."""
        u = torch.rand(batch, generator=self.generator, dtype=torch.float64)
        i = torch.searchsorted(self.cdf, u, right=True).clamp_(max=len(self.cdf) - 1)
        if self.rotate:
            rot = torch.randint(N_ROTATIONS, (batch,), generator=self.generator)
        else:
            rot = torch.zeros(batch, dtype=torch.int64)
        drawn = (self.coords[i], rot, self.targets[i], self.importance[i])
        return drawn if self.query is None else (*drawn, self.query[i])


class DrawnBatches(torch.utils.data.IterableDataset):
    """`steps` batches of weighted draws per pass (one training epoch); the generator
    carries on across epochs, so a run is one reproducible stream. Yields index
    tuples only: patches are cut on the device inside the training step.

    Resumable mid-epoch: the training step calls `take` for each batch it trains on, and
    `state_dict` gives the position in the pass and the generator state *before* the first
    batch not yet taken (the loader may already have drawn it ahead), so a pass restored by
    `load_state_dict` yields exactly the batches the interrupted one had left. Lightning
    (2.x) saves and restores a train loader that has these two methods with its loop state.
    """

    def __init__(self, draws: WeightedDraws, batch: int, steps: int):
        self.draws, self.batch, self.steps = draws, batch, steps
        self.taken = steps  # batches of the current pass the training step has taken
        self._before: dict[int, torch.Tensor] = {}  # generator state before drawing batch i of the pass
        self._resume: dict | None = None

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        first = 0
        if self._resume is not None:
            first = int(self._resume["position"])
            self.draws.generator.set_state(self._resume["generator"])
            self._resume = None
        self.taken, self._before = first, {}
        for i in range(first, self.steps):
            self._before[i] = self.draws.generator.get_state()
            self._before.pop(i - 4, None)  # a loader prefetches a batch or two, never more
            yield self.draws.draw(self.batch)

    def take(self) -> None:
        """Mark the next batch of the pass as trained on."""
        self.taken += 1

    def state_dict(self) -> dict:
        """{'position': batches of this pass taken (0 once the pass is done), 'generator': the
        generator's state before the next batch to train on}."""
        if self.taken >= self.steps:
            return {"position": 0, "generator": self.draws.generator.get_state()}
        return {"position": self.taken, "generator": self._before.get(self.taken, self.draws.generator.get_state())}

    def load_state_dict(self, state: dict) -> None:
        """Make the next pass start where `state` (from `state_dict`) was taken."""
        self._resume = {"position": int(state["position"]), "generator": state["generator"]}
