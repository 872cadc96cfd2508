"""Per-stage seeds: each stage that draws random numbers derives its own from the top-level `seed`.

`stage_seed(seed, stage, *keys)` is the first 32-bit word of
numpy.random.SeedSequence(seed, spawn_key=(crc32(stage), crc32(key), ...)): the child of
the top-level SeedSequence named by the stage (and, for a stage run once per universe, the
universe), independent of the other stages' and of the order stages are added in. The
synthetic stage is the exception: it takes the top-level seed as given and derives its
initial conditions and galaxies from [seed, acquire.synthetic.seed_offset]
(`dm2gal.acquire.synthetic.build.seeds`), so that the mini-universe stays the one it was.
Each stage records the seed it used in its outputs (cubes.json's `seed`, the fields' `seed`
attribute, the HOD's bins.json).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_path

STAGES = ("split", "train", "hod", "paint_realisations", "ideal_realisations")
"""The stages that draw random numbers with a derived seed."""


def stage_seed(seed: int, stage: str, *keys: str) -> int:
    """The seed of `stage` (one of STAGES; `keys` e.g. a universe name) derived from `seed`."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {STAGES}")
    spawn_key = tuple(zlib.crc32(str(k).encode()) for k in (stage, *keys))
    return int(np.random.SeedSequence(int(seed), spawn_key=spawn_key).generate_state(1)[0])


def record_seed(json_path: str | os.PathLike, seed: int) -> None:
    """Add `"seed": seed` to a JSON object file (a stage's report), atomically."""
    report = json.loads(Path(json_path).read_text())
    report["seed"] = int(seed)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
