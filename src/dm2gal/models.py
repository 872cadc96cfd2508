"""The models compared with the truth: the one list of their names and what each is.

The workflow (rules/common.smk: which models a universe's statistics have, the files they
read, the stats rule's wildcard), the scores (`dm2gal.metrics`) and the figures
(`dm2gal.figures`: line style and legend) all read `REGISTRY`. Adding a model is one
`Model(...)` entry here (and the rule that writes its field).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Model:
    """One painter of stellar mass, as the statistics, the scores and the figures see it.

    `fields`: where its field(s) lie under results_dir, a template of `{painted}` (paint/'s
    folder of the universe: "test" or "universes/<name>"), `{universe}`, `{hydro}` (fields/'s
    folder of the universe's hydro run) and, for an ensemble, `{i}` (the draw).
    `draws`: the config key ("section.key") giving an ensemble's number of draws (its
    statistics stack them; None: one field). `requires`: config keys that must be true (or
    non-zero) for the model to be measured. `test_only`: the training universe's test cube
    only; `synthetic_only`: the mini-universe only (its generator is known). `contender`: given
    a verdict against the HOD. `banded`: drawn with a band of its spread in the figures.
    `style`: matplotlib line keywords (colour, ls, lw) beside `label`.
    """

    name: str
    label: str
    fields: str
    draws: str | None = None
    requires: tuple[str, ...] = ()
    test_only: bool = False
    synthetic_only: bool = False
    contender: bool = False
    banded: bool = False
    style: dict = field(default_factory=dict)


REGISTRY = (
    Model("dm2gal", "dm2gal", "paint/{painted}/stellar_mass.zarr", contender=True, banded=True,
          style=dict(color="tab:red", ls="-", lw=1.5)),
    Model("dm2gal_realisations", "dm2gal realisations", "paint/{painted}/realisation_{i}.zarr",
          draws="paint.realisations", requires=("paint.realisations",), contender=True, banded=True,
          style=dict(color="tab:orange", ls="-.", lw=1.3)),
    Model("dm2gal_oracle", "dm2gal (oracle positions)", "paint/test_oracle/stellar_mass.zarr",
          requires=("paint.oracle",), test_only=True, style=dict(color="darkred", ls="--", lw=1.5)),
    Model("hod", "HOD", "hod/{universe}/realisation_{i}.zarr", draws="hod.realisations", banded=True,
          style=dict(color="tab:green", ls="-", lw=1.5)),
    Model("ideal", "ideal (noise-free mean)", "fields/{hydro}/stellar_mass_ideal.zarr", synthetic_only=True,
          contender=True, style=dict(color="k", ls=":", lw=1.5)),
    Model("ideal_realisations", "ideal realisations (the generator redrawn)", "ideal/{universe}/realisation_{i}.zarr",
          draws="paint.realisations", requires=("paint.realisations",), synthetic_only=True, contender=True,
          banded=True, style=dict(color="grey", ls="--", lw=1.2)),
)
"""Every model, in the order of tables, legends and metrics.json."""

BY_NAME = {m.name: m for m in REGISTRY}
NAMES = tuple(BY_NAME)
"""The model names, in `REGISTRY` order."""
CONTENDERS = tuple(m.name for m in REGISTRY if m.contender)
"""The models given a verdict against the HOD (metrics.json's `verdicts` holds dm2gal's,
`verdicts_<model>` the others')."""
ENSEMBLES = tuple(m.name for m in REGISTRY if m.draws)
BANDED = tuple(m.name for m in REGISTRY if m.banded)
REFERENCE = "hod"
"""The benchmark the contenders are judged against."""


def config_value(config: dict, key: str):
    """config["section"]["key"] for key "section.key"."""
    section, name = key.split(".")
    return config[section][name]


def measured(config: dict, universe: str, synthetic: bool) -> list[str]:
    """The models whose statistics a universe ("test": the training universe's test cube) has,
    in `REGISTRY` order: those whose `requires` keys are set, the test-only ones on "test",
    the synthetic-only ones for a mini-universe."""
    return [m.name for m in REGISTRY
            if all(config_value(config, key) for key in m.requires)
            and (universe == "test" or not m.test_only) and (synthetic or not m.synthetic_only)]


def field_paths(config: dict, model: str, painted: str, universe: str, hydro: str) -> str | list[str]:
    """The field (one path) or the ensemble's fields (a list) of `model` on a universe, relative to
    results_dir (see `Model.fields` for `painted`, `universe`, `hydro`)."""
    m = BY_NAME[model]
    if m.draws is None:
        return m.fields.format(painted=painted, universe=universe, hydro=hydro)
    return [m.fields.format(painted=painted, universe=universe, hydro=hydro, i=i)
            for i in range(int(config_value(config, m.draws)))]
