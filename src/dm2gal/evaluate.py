"""Held-out universes: paired runs that training never sees (docs/evaluation.md).

Each entry of `evaluation.universes` is either a mini-universe (synthetic source:
`seed_offset`, every other `acquire.synthetic` setting the training universe's) or a
paired run already on disk (archive sources: `dark_base`, `hydro_base`, optional
`snapshot`). The workflow (rules/evaluate.smk) generates and grids each one, paints
its whole gravity-only box with the selected model and the training HOD, and
computes the statistics of `dm2gal.stats` over the whole box against its hydro twin.
Runs of a universe are named `universes/{name}/{dark,hydro}` in result and data paths.
"""

from __future__ import annotations

import copy

from .tng import SIMS

RESERVED = ("test",)
"""Universe names taken by the pipeline: "test" is the training universe's test cube."""


def run_name(universe: str, sim: str) -> str:
    """The run name of one run of a held-out universe: universes/{universe}/{sim}."""
    if sim not in SIMS:
        raise ValueError(f"sim must be one of {SIMS}, got {sim!r}")
    return f"universes/{universe}/{sim}"


def check_universes(config: dict) -> list[dict]:
    """`evaluation.universes` of a schema-validated config, after the checks a schema cannot
    make; raises ValueError naming the offending key. Returns the entries."""
    entries = config.get("evaluation", {}).get("universes", [])
    source = config["acquire"]["source"]
    names, offsets = {}, {}
    for i, entry in enumerate(entries):
        key = f"evaluation.universes[{i}]"
        name = entry["name"]
        if name in RESERVED:
            raise ValueError(f"{key}.name: {name!r} is reserved (the training universe's test cube)")
        if name in names:
            raise ValueError(f"{key}.name: {name!r} is also the name of evaluation.universes[{names[name]}]")
        names[name] = i
        if source == "synthetic":
            if "seed_offset" not in entry:
                raise ValueError(f"{key}: acquire.source is synthetic, so the entry needs a seed_offset "
                                 f"(a mini-universe), not dark_base/hydro_base")
            offset = entry["seed_offset"]
            training = config["acquire"]["synthetic"]["seed_offset"]
            if offset == training:
                raise ValueError(f"{key}.seed_offset: {offset} is acquire.synthetic.seed_offset, the training "
                                 f"universe; a held-out universe needs another")
            if offset in offsets:
                raise ValueError(f"{key}.seed_offset: {offset} is also evaluation.universes[{offsets[offset]}]'s")
            offsets[offset] = i
        elif "seed_offset" in entry:
            raise ValueError(f"{key}.seed_offset: a mini-universe needs acquire.source synthetic (it is "
                             f"{source!r}); list a paired run on disk with dark_base and hydro_base instead")
    return entries


def synthetic_params(params: dict, seed_offset: int) -> dict:
    """The `acquire.synthetic` section of a held-out mini-universe: the training one's with
    another seed_offset."""
    out = copy.deepcopy(params)
    out["seed_offset"] = int(seed_offset)
    return out
