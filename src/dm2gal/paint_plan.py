"""How a large painted region is cut into x-slab jobs (`dm2gal.paint.paint_slab`, `assemble`).

Plain arithmetic, without torch, so that the workflow plans the slab jobs when it loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fields import DEFAULT_CHUNK


@dataclass(frozen=True)
class SlabPlan:
    """The x-slabs of a painted region of edge `size`: `thickness` planes each (the last one may
    be thinner), a multiple of the dense tile and of the output's Zarr chunk edge `chunk`."""

    size: int
    thickness: int
    chunk: int

    @classmethod
    def for_region(cls, size: int, slabs: int, tile: int, stride: int, chunk: int = DEFAULT_CHUNK) -> "SlabPlan":
        """At most `slabs` slabs, as even as the dense tile (`tile` rounded as `dm2gal.dense.output_tiles`
        rounds it for a network of total `stride`) and the chunk edge allow."""
        chunk = min(chunk, size)
        step = math.lcm(max(stride, tile // stride * stride), chunk)
        return cls(size, min(size, -(-(-(-size // slabs)) // step) * step), chunk)

    @property
    def n_slabs(self) -> int:
        return -(-self.size // self.thickness)

    def slab(self, i: int) -> tuple[int, int]:
        """(first plane, planes) of slab i."""
        if not 0 <= i < self.n_slabs:
            raise ValueError(f"slab {i} of a plan of {self.n_slabs}")
        return i * self.thickness, min(self.thickness, self.size - i * self.thickness)
