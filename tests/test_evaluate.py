"""Held-out universes and ensembles (issue 12): the checks on evaluation.universes, the
stacking of an ensemble's statistics, and whole-box statistics of a held-out universe."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from dm2gal import evaluate, stats
from dm2gal.fields import field_attrs, write_field

CFG = dict(mas="CIC", bk=dict(triangles=[[1.5, 2.0]], n_angles=5),
           pdf=dict(log10_mass_min=7.0, log10_mass_max=11.0, n_bins=8))


@pytest.fixture
def config(repo):
    return yaml.safe_load((repo / "config.yaml").read_text())


def test_default_config_has_two_held_out_universes(config):
    entries = evaluate.check_universes(config)
    assert len(entries) >= 2
    offsets = [u["seed_offset"] for u in entries]
    assert config["acquire"]["synthetic"]["seed_offset"] not in offsets and len(set(offsets)) == len(offsets)


@pytest.mark.parametrize("entries, key", [
    ([{"name": "a", "seed_offset": 0}], r"evaluation.universes\[0\].seed_offset"),  # the training universe
    ([{"name": "a", "seed_offset": 3}, {"name": "b", "seed_offset": 3}], r"universes\[1\].seed_offset"),
    ([{"name": "a", "seed_offset": 3}, {"name": "a", "seed_offset": 4}], r"universes\[1\].name"),
    ([{"name": "test", "seed_offset": 3}], r"universes\[0\].name"),
    ([{"name": "a", "dark_base": "x", "hydro_base": "y"}], r"universes\[0\]: acquire.source is synthetic"),
])
def test_bad_universe_is_refused_naming_the_key(config, entries, key):
    config["evaluation"] = {"universes": entries}
    with pytest.raises(ValueError, match=key):
        evaluate.check_universes(config)


@pytest.mark.parametrize("training, key", [
    ([{"name": "t", "seed_offset": 1}], r"split.training_universes\[0\].seed_offset: 1 is also evaluation"),
    ([{"name": "heldout2", "seed_offset": 7}], r"split.training_universes\[0\].name: 'heldout2' is also"),
    ([{"name": "t", "seed_offset": 0}], r"split.training_universes\[0\].seed_offset: 0 is acquire"),
])
def test_a_training_universe_cannot_be_a_held_out_one(config, training, key):
    """Training on a held-out universe would score the painter on what it trained on."""
    config["evaluation"] = {"universes": [{"name": "heldout1", "seed_offset": 1},
                                          {"name": "heldout2", "seed_offset": 2}]}
    config["split"]["training_universes"] = training
    with pytest.raises(ValueError, match=key):
        evaluate.check_universes(config)
    config["split"]["training_universes"] = [{"name": "t", "seed_offset": 101}]
    assert evaluate.check_training_universes(config)[0]["seed_offset"] == 101


def test_mini_universe_entry_needs_the_synthetic_source(config):
    config["acquire"]["source"] = "tng"
    config["evaluation"] = {"universes": [{"name": "a", "seed_offset": 3}]}
    with pytest.raises(ValueError, match=r"universes\[0\].seed_offset: a mini-universe needs"):
        evaluate.check_universes(config)
    config["evaluation"] = {"universes": [{"name": "a", "dark_base": "x", "hydro_base": "y"}]}
    assert evaluate.check_universes(config)[0]["dark_base"] == "x"


def test_synthetic_params_change_the_seed_offset_only(config):
    params = config["acquire"]["synthetic"]
    held_out = evaluate.synthetic_params(params, 7)
    assert held_out["seed_offset"] == 7 and params["seed_offset"] == 0
    assert {k: v for k, v in held_out.items() if k != "seed_offset"} == \
        {k: v for k, v in params.items() if k != "seed_offset"}


def summary(rng, n=24, box=12.0):
    field = np.where(rng.random((n,) * 3) < 0.05, 10 ** rng.normal(9, 0.4, (n,) * 3), 0).astype(np.float32)
    return stats.summarise(field, box, CFG, truth=field)


def test_stack_and_split_realisations_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    draws = [summary(rng) for _ in range(3)]
    stacked = stats.stack_realisations(draws)
    assert stacked["realisations"] == 3
    assert stacked["pk"].shape == (3, len(draws[0]["k"])) and stacked["B"].shape == (3, *draws[0]["B"].shape)
    assert stacked["total_mass"].shape == (3,) and stacked["k"].shape == draws[0]["k"].shape
    stats.save_stats(tmp_path / "hod.npz", stacked)
    back = stats.load_stats(tmp_path / "hod.npz")
    assert back["realisations"] == 3 and back["mas"] == "CIC"
    for one, again in zip(draws, stats.split_realisations(back)):
        assert set(one) == set(again)
        for key in one:
            np.testing.assert_array_equal(np.asarray(one[key]), np.asarray(again[key]))
    assert stats.split_realisations(draws[0]) == [draws[0]]


def test_stacking_refuses_realisations_of_different_cubes():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="depends on the cube only"):
        stats.stack_realisations([summary(rng), summary(rng, box=13.0)])


def test_whole_box_statistics_of_a_held_out_universe(tmp_path):
    """Without a cubes.json the region is the whole box: the truth is the whole field, a whole-box
    painting (origin 0) and a grid field without origin (the ideal painter's) are read whole, and
    the HOD's list of realisations is stacked."""
    rng = np.random.default_rng(3)
    n, box = 24, 12.0
    truth = np.where(rng.random((n,) * 3) < 0.05, 10 ** rng.normal(9, 0.4, (n,) * 3), 0).astype(np.float32)
    base = dict(box_size=box, n_grid=n, snapshot=99, mas="CIC")
    write_field(tmp_path / "hydro.zarr", truth, field_attrs(source="hydro", quantity="stellar_mass", **base))
    write_field(tmp_path / "ideal.zarr", truth, field_attrs(source="hydro", quantity="stellar_mass_ideal", **base))
    painted = dict(field_attrs(source="dark", quantity="stellar_mass", **base), origin=[0, 0, 0])
    write_field(tmp_path / "painted.zarr", truth * 2, painted)
    hods = []
    for i in range(2):
        hods.append(tmp_path / f"hod_{i}.zarr")
        write_field(hods[-1], rng.permutation(truth.ravel()).reshape(truth.shape), painted)
    whole = stats.model_statistics("truth", tmp_path / "hydro.zarr", None, CFG)
    np.testing.assert_allclose(whole["pk"], stats.summarise(truth, box, CFG)["pk"])
    assert whole["box_size"] == box and whole["n_grid"] == n
    ideal = stats.model_statistics("ideal", tmp_path / "hydro.zarr", None, CFG, field=tmp_path / "ideal.zarr")
    np.testing.assert_allclose(ideal["r"], 1, rtol=1e-6)
    dm2gal = stats.model_statistics("dm2gal", tmp_path / "hydro.zarr", None, CFG, field=tmp_path / "painted.zarr")
    np.testing.assert_allclose(dm2gal["pk"], whole["pk"], rtol=1e-5)  # x2 leaves the overdensity
    assert dm2gal["total_mass"] == pytest.approx(2 * whole["total_mass"], rel=1e-6)
    hod = stats.model_statistics("hod", tmp_path / "hydro.zarr", None, CFG, field=hods)
    assert hod["realisations"] == 2 and hod["pk"].shape == (2, len(whole["k"]))
    assert np.all(np.abs(hod["r"][:, 1:4]) < 0.3)  # shuffled positions: uncorrelated


def test_ideal_field_on_the_test_cube_is_cut_from_the_whole_box(tmp_path):
    rng = np.random.default_rng(4)
    n = 24
    field = rng.random((n,) * 3).astype(np.float32) + 0.5
    base = dict(box_size=12.0, n_grid=n, snapshot=99, mas="CIC")
    write_field(tmp_path / "ideal.zarr", field, field_attrs(source="hydro", quantity="stellar_mass_ideal", **base))
    cube, _ = stats.read_model_cube(tmp_path / "ideal.zarr", [20, 3, 5], 12)
    np.testing.assert_array_equal(cube, np.roll(field, (-20, -3, -5), (0, 1, 2))[:12, :12, :12])
