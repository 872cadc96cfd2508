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
    """The run name of one run of a held-out or training universe: universes/{universe}/{sim}."""
    if sim not in SIMS:
        raise ValueError(f"sim must be one of {SIMS}, got {sim!r}")
    return f"universes/{universe}/{sim}"


LISTS = (("evaluation", "universes"), ("split", "training_universes"))
"""Where paired runs beside the training pair are listed: the held-out universes, and the training
universes whose boxes add training voxels. They share result paths (universes/{name}/...), so names
and mini-universe seed offsets must differ across both lists."""


def _checked_entries(config: dict) -> dict[tuple[str, str], list[dict]]:
    """The entries of each of LISTS in a schema-validated config, after the checks a schema cannot
    make (across both lists); raises ValueError naming the offending key."""
    source = config["acquire"]["source"]
    training = config["acquire"]["synthetic"]["seed_offset"]
    names, offsets, out = {}, {}, {}
    for section, field in LISTS:
        entries = config.get(section, {}).get(field, [])
        out[(section, field)] = entries
        for i, entry in enumerate(entries):
            key = f"{section}.{field}[{i}]"
            name = entry["name"]
            if name in RESERVED:
                raise ValueError(f"{key}.name: {name!r} is reserved (the training universe's test cube)")
            if name in names:
                raise ValueError(f"{key}.name: {name!r} is also the name of {names[name]}")
            names[name] = key
            if source == "synthetic":
                if "seed_offset" not in entry:
                    raise ValueError(f"{key}: acquire.source is synthetic, so the entry needs a seed_offset "
                                     f"(a mini-universe), not dark_base/hydro_base")
                offset = entry["seed_offset"]
                if offset == training:
                    raise ValueError(f"{key}.seed_offset: {offset} is acquire.synthetic.seed_offset, the training "
                                     f"pair; this universe needs another")
                if offset in offsets:
                    raise ValueError(f"{key}.seed_offset: {offset} is also {offsets[offset]}'s (one universe "
                                     f"would be trained on and evaluated on, or made twice)")
                offsets[offset] = key
            elif "seed_offset" in entry:
                raise ValueError(f"{key}.seed_offset: a mini-universe needs acquire.source synthetic (it is "
                                 f"{source!r}); list a paired run on disk with dark_base and hydro_base instead")
    return out


def check_universes(config: dict) -> list[dict]:
    """`evaluation.universes` of a schema-validated config, checked together with
    `split.training_universes` (`_checked_entries`). Returns the held-out entries."""
    return _checked_entries(config)[("evaluation", "universes")]


def check_training_universes(config: dict) -> list[dict]:
    """`split.training_universes`, checked as `check_universes` checks; returns its entries."""
    return _checked_entries(config)[("split", "training_universes")]


def synthetic_params(params: dict, seed_offset: int) -> dict:
    """The `acquire.synthetic` section of a held-out or training mini-universe: the training
    pair's with another seed_offset."""
    out = copy.deepcopy(params)
    out["seed_offset"] = int(seed_offset)
    return out
