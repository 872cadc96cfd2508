"""The one list of models (dm2gal.models): what the statistics, scores and figures read."""
from dm2gal import figures, metrics, models


def _config(oracle=True, realisations=10, hod=3):
    return {"paint": {"oracle": oracle, "realisations": realisations}, "hod": {"realisations": hod}}


def test_every_consumer_reads_the_registry():
    assert metrics.MODELS == models.NAMES and metrics.CONTENDERS == models.CONTENDERS
    assert set(figures.STYLE) == {"truth", *models.NAMES}
    assert set(figures.BANDED) <= set(models.NAMES) and models.REFERENCE in models.NAMES
    assert set(models.ENSEMBLES) == {"dm2gal_realisations", "hod", "ideal_realisations"}


def test_measured_models_follow_the_config_and_the_universe():
    cfg = _config()
    assert models.measured(cfg, "test", True) == list(models.NAMES)
    assert models.measured(cfg, "heldout1", True) == [n for n in models.NAMES if n != "dm2gal_oracle"]
    assert models.measured(_config(oracle=False, realisations=0), "test", False) == ["dm2gal", "hod"]


def test_field_paths():
    cfg = _config(hod=2)
    assert models.field_paths(cfg, "dm2gal", "universes/u", "u", "universes/u/hydro") == \
        "paint/universes/u/stellar_mass.zarr"
    assert models.field_paths(cfg, "hod", "test", "test", "hydro") == \
        ["hod/test/realisation_0.zarr", "hod/test/realisation_1.zarr"]
    assert models.field_paths(cfg, "ideal", "test", "test", "hydro") == "fields/hydro/stellar_mass_ideal.zarr"
