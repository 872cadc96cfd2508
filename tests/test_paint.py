"""Painting: model/field checks, dense vs per-voxel painting, occupancy calibration, catalogue."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dm2gal import occupancy, paint
from dm2gal.catalogue import galaxies, read_catalogue, write_catalogue
from dm2gal.fields import field_attrs, read_field, write_field
from dm2gal.model import build_model, configured_patch, model_config
from dm2gal.split import Cube


def test_refuses_a_model_whose_patch_does_not_match():
    cfg = model_config("small")
    p = cfg["patch"]
    with pytest.raises(paint.PatchMismatchError, match=rf"reads {p}\^3-voxel patches but the configuration asks for 65\^3"):
        paint.check_model(cfg, 65, 128, 0.5, 0.5)
    with pytest.raises(paint.PatchMismatchError, match=f"larger than the {p - 1}"):
        paint.check_model(cfg, None, p - 1, 0.5, 0.5)
    with pytest.raises(paint.PatchMismatchError, match="trained on"):
        paint.check_model(cfg, p, 128, 0.25, 0.5)
    assert paint.check_model(cfg, p, 128, 0.5, 0.5) == p
    assert configured_patch({"preset": "paper"}) == 65


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Small periodic input and truth fields in Zarr, with a trained-like model."""
    root = tmp_path_factory.mktemp("paint")
    rng = np.random.default_rng(5)
    n, box = 40, 20.0
    dm = (10 ** rng.normal(9, 0.5, (n,) * 3)).astype(np.float32)
    sub = np.where(rng.random((n,) * 3) < 0.05, 10 ** rng.uniform(9, 12, (n,) * 3), 0).astype(np.float32)
    star = np.where(sub > 3e10, 10 ** rng.uniform(8, 10, (n,) * 3), 0).astype(np.float32)
    paths = {}
    for name, data in (("dm_mass", dm), ("subhalo_mass", sub), ("stellar_mass", star)):
        paths[name] = root / f"{name}.zarr"
        write_field(paths[name], data, field_attrs(box_size=box, n_grid=n, source="test", snapshot=99,
                                                   mas="CIC", quantity=name), chunk=16)
    torch.manual_seed(0)
    net = build_model(model_config("small")).eval()
    norm = dict(input_mean=[9.0, 2.0], input_std=[0.5, 4.0], target_mean=9.0, target_std=0.6)
    return root, paths, net, norm


@pytest.mark.parametrize("mode", ["honest", "oracle"])
def test_dense_and_per_voxel_paint_the_same_field(fields, mode):
    root, paths, net, norm = fields
    start, size = (30, 5, 12), 13  # wraps around the box
    attrs = paint.painted_attrs(read_field(paths["dm_mass"])[1], start, size, mode, "dark")
    out = {}
    for method in ("dense", "per_voxel"):
        out[method] = root / f"{mode}_{method}.zarr"
        summary = paint.paint(net, norm, paths["dm_mass"], paths["subhalo_mass"], out[method], start=start,
                              size=size, attrs=attrs,
                              occupancy=paint.Occupancy(mode, 3e10 if mode == "honest" else None,
                                                        paths["stellar_mass"] if mode == "oracle" else None),
                              settings=paint.Settings(method=method, tile=8, batch=32))
        assert summary["painted_voxels"] > 20
    dense, attrs_out = read_field(out["dense"])
    per_voxel, _ = read_field(out["per_voxel"])
    np.testing.assert_allclose(dense, per_voxel, rtol=1e-4)
    assert attrs_out["origin"] == list(start) and attrs_out["parent_n_grid"] == 40 and attrs_out["mode"] == mode
    assert attrs_out["box_size"] == pytest.approx(13 * 0.5)
    from dm2gal.fields import read_periodic

    sub = read_periodic(read_field(paths["subhalo_mass"])[0], start, (size,) * 3)
    star = read_periodic(read_field(paths["stellar_mass"])[0], start, (size,) * 3)
    where = (sub >= 3e10) if mode == "honest" else (star > 1e8)
    np.testing.assert_array_equal(dense > 0, where)


def test_best_threshold_hand_values():
    values = np.array([5.0, 4.0, 4.0, 3.0, 2.0, 1.0])
    occupied = np.array([1, 1, 0, 1, 0, 0], bool)
    # thresholds 5, 4, 3, 2, 1 -> tp 1, 2, 3, 3, 3; candidates 1, 3, 4, 5, 6; with 4 occupied (one unreachable)
    # F1 = 2tp / (cand + 4): 0.4, 0.571, 0.75, 0.667, 0.6 -> threshold 3
    assert occupancy.best_threshold(values, occupied, 4, "f1") == 3.0
    assert occupancy.best_threshold(values, occupied, 4, "count") == 3.0
    s = occupancy.scores(np.array([1, 1, 0, 1], bool), np.array([1, 0, 1, 1], bool))
    assert (s["precision"], s["recall"], s["n_true_positive"]) == (2 / 3, 2 / 3, 2)


def test_calibration_ignores_the_held_out_cubes():
    n = 16
    sub = np.zeros((n,) * 3, np.float32)
    star = np.zeros((n,) * 3, np.float32)
    sub[2:6, 2:6, 2:6] = 1e11
    star[2:6, 2:6, 2:6] = 1e9
    sub[10:14, 10:14, 10:14] = 1e12  # inside the held-out cube: a galaxy-free massive region
    out = occupancy.calibrate(star, sub, [Cube((9, 9, 9), 6)], min_mass=1e8, slab=5)
    assert out["threshold"] == pytest.approx(1e11)
    assert out["training"]["precision"] == 1 and out["training"]["recall"] == 1
    assert out["training"]["n_occupied"] == 64


def test_catalogue_shares_painted_mass_among_subhalos(tmp_path):
    import MAS_library as MASL

    rng = np.random.default_rng(9)
    n, box = 32, 16.0
    pos = rng.random((300, 3)) * box
    mass = 10 ** rng.uniform(9, 12, 300)
    grid = np.zeros((n,) * 3, np.float32)
    MASL.MA(pos.astype(np.float32), grid, np.float32(box), "CIC", W=mass.astype(np.float32), verbose=False)
    painted = 0.01 * grid.astype(np.float64)  # painted mass proportional to the subhalo field
    painted[np.unravel_index(np.argmin(grid), grid.shape)] = 5e8  # a voxel no subhalo reaches
    orphan = np.array(np.unravel_index(np.argmin(grid), grid.shape))
    gal = galaxies(painted, (0, 0, 0), n, box, pos, mass, slab=7)
    hosted = gal["host_subhalo"] >= 0
    np.testing.assert_array_equal(gal["host_subhalo"][hosted], np.arange(300))
    np.testing.assert_allclose(gal["stellar_mass"][hosted], 0.01 * mass, rtol=1e-5)
    np.testing.assert_allclose(gal["position"][hosted], pos)
    assert gal["stellar_mass"][~hosted] == pytest.approx([5e8])
    np.testing.assert_allclose(gal["position"][~hosted][0], orphan * box / n)
    assert gal["stellar_mass"].sum() == pytest.approx(painted.sum(), rel=1e-6)
    # a cube of the box: every painted voxel's mass lands on some galaxy
    start, size = (20, 3, 28), 10
    from dm2gal.fields import read_periodic

    cube = read_periodic(painted, start, (size,) * 3)
    part = galaxies(cube, start, n, box, pos, mass, slab=4)
    assert part["stellar_mass"].sum() == pytest.approx(cube.sum(), rel=1e-6)
    write_catalogue(tmp_path / "c.hdf5", attrs=dict(box_size=box, mode="honest"), **part)
    cols, attrs = read_catalogue(tmp_path / "c.hdf5")
    assert attrs["n_galaxies"] == len(cols["stellar_mass"]) == (part["stellar_mass"] > 0).sum()


def stage_inputs(tmp_path, net, norm, n_subhalos: int, calibration: dict | None = None):
    """What the paint stage reads beside the fields: a checkpoint (with `calibration`, a
    `Calibration.as_dict`, if given), a gravity-only subhalo catalogue of `n_subhalos`
    random subhalos, cubes.json and occupancy.json."""
    import json

    from dm2gal import tng
    from dm2gal.inference import checkpoint_dict

    ckpt = tmp_path / "best.ckpt"
    torch.save(checkpoint_dict(net, norm, {}, **({"calibration": calibration} if calibration else {})), ckpt)
    rng = np.random.default_rng(4)
    base = tmp_path / "dark" / "output"
    header = dict(BoxSize=20.0, Omega0=0.3, OmegaLambda=0.7, HubbleParam=0.7, Redshift=0.0, Time=1.0)
    tng.write_groupcat(base, 99, header, dict(GroupMass=np.array([1e13]), GroupFirstSub=np.array([0])),
                       dict(SubhaloPos=rng.random((n_subhalos, 3)) * 20,
                            SubhaloMass=10 ** rng.uniform(10, 12, n_subhalos),
                            SubhaloGrNr=np.zeros(n_subhalos, np.int32)), 1)
    cubes = tmp_path / "cubes.json"
    cubes.write_text(json.dumps(dict(validation=dict(start=[0, 0, 0], size=8), test=dict(start=[30, 5, 12], size=16),
                                     min_stellar_mass=1e8)))
    occ = tmp_path / "occupancy.json"
    occ.write_text(json.dumps(dict(threshold=3e10)))
    return ckpt, base, cubes, occ


def test_run_paints_and_catalogues_the_test_cube(fields, tmp_path):
    """The stage entry point: checkpoint in, honest field and catalogue out; a wrong patch is refused."""
    root, paths, net, norm = fields
    ckpt, base, cubes, occ = stage_inputs(tmp_path, net, norm, n_subhalos=50)
    job = paint.Job(ckpt, paths["dm_mass"], paths["subhalo_mass"], paths["dm_mass"], cubes, "dark",
                    occupancy_json=occ, subhalos=(base, 99))
    settings = paint.Settings(tile=8, device="cpu")
    with pytest.raises(paint.PatchMismatchError, match=f"reads {net.config['patch']}"):
        paint.run(replace(job, expected_patch=65), tmp_path / "x.zarr", settings=settings)
    assert not (tmp_path / "x.zarr").exists()
    summary = paint.run(replace(job, expected_patch=net.config["patch"]), tmp_path / "painted.zarr",
                        out_catalogue=tmp_path / "catalogue.hdf5", settings=settings)
    field, attrs = read_field(tmp_path / "painted.zarr")
    assert field.shape == (16,) * 3 and attrs["mode"] == "honest" and attrs["occupancy_threshold"] == 3e10
    assert summary["painted_voxels"] == int((field > 0).sum()) > 0
    cols, cat_attrs = read_catalogue(tmp_path / "catalogue.hdf5")
    assert cols["stellar_mass"].sum() == pytest.approx(float(field.sum(dtype=np.float64)), rel=1e-5)
    assert set(np.unique(cols["host_subhalo"])) <= set(range(-1, 50))


def test_a_whole_box_run_keeps_the_splits_threshold(fields, tmp_path):
    """An extra run or held-out universe is painted whole, with the split's min_stellar_mass."""
    import json

    root, paths, net, norm = fields
    ckpt, base, cubes, occ = stage_inputs(tmp_path, net, norm, n_subhalos=50)
    cubes.write_text(json.dumps({**json.loads(cubes.read_text()), "min_stellar_mass": 3e8}))
    paint.run(paint.Job(ckpt, paths["dm_mass"], paths["subhalo_mass"], paths["dm_mass"], cubes, "dark", whole_box=True,
                        occupancy_json=occ), tmp_path / "box.zarr", settings=paint.Settings(tile=16, device="cpu"))
    field, attrs = read_field(tmp_path / "box.zarr")
    assert field.shape == (40,) * 3 and attrs["origin"] == [0, 0, 0] and attrs["min_stellar_mass"] == 3e8


def test_whole_box_painting_agrees_with_the_cube_painting(fields):
    """Painting a box whole (as for extra runs) gives the cube painting on the cube: the
    periodic halo and the tiling leave no seams."""
    from dm2gal.fields import read_periodic

    root, paths, net, norm = fields
    dm_attrs = read_field(paths["dm_mass"])[1]
    out = {}
    for name, start, size, tile in (("box", (0, 0, 0), 40, 16), ("cube", (30, 5, 12), 13, 8)):
        out[name] = root / f"whole_{name}.zarr"
        paint.paint(net, norm, paths["dm_mass"], paths["subhalo_mass"], out[name], start=start, size=size,
                    attrs=paint.painted_attrs(dm_attrs, start, size, "honest", "dark"),
                    occupancy=paint.Occupancy(threshold=3e10),  # the box reads tiles from Zarr
                    settings=paint.Settings(tile=tile, max_memory_gb=0 if name == "box" else 1))
    box = read_periodic(read_field(out["box"])[0], (30, 5, 12), (13,) * 3)
    np.testing.assert_allclose(box, read_field(out["cube"])[0], rtol=1e-5)


def test_the_probabilistic_head_paints_its_log_normal_mean_and_scatter(fields, tmp_path):
    """A two-output checkpoint paints 10^(mu + ln10 sigma^2 / 2), the same densely and per voxel,
    writes sigma [dex] beside it, and its realisations keep the mean over many draws."""
    from dm2gal.realisations import write_realisations

    root, paths, _, norm = fields
    torch.manual_seed(1)
    net = build_model(model_config("small", outputs=2)).eval()
    ckpt, base, cubes, occ = stage_inputs(tmp_path, net, norm, n_subhalos=300)
    fields_out = {}
    for method in ("dense", "per_voxel"):
        fields_out[method] = (tmp_path / f"{method}.zarr", tmp_path / f"{method}_scatter.zarr")
        paint.run(paint.Job(ckpt, paths["dm_mass"], paths["subhalo_mass"], paths["dm_mass"], cubes, "dark",
                            occupancy_json=occ), fields_out[method][0], out_scatter=fields_out[method][1],
                  settings=paint.Settings(method=method, tile=8, device="cpu"))
    mean, attrs = read_field(fields_out["dense"][0])
    sigma, sattrs = read_field(fields_out["dense"][1])
    np.testing.assert_allclose(mean, read_field(fields_out["per_voxel"][0])[0], rtol=1e-4)
    np.testing.assert_allclose(sigma, read_field(fields_out["per_voxel"][1])[0], rtol=1e-4, atol=1e-6)
    assert sattrs["units"] == "dex" and ((sigma > 0) == (mean > 0)).all() and (mean > 0).sum() > 20
    outs = [tmp_path / f"realisation_{i}.zarr" for i in range(400)]
    write_realisations(outs, fields_out["dense"][0], fields_out["dense"][1], base, 99, seed=[3, 7])
    draws = np.stack([read_field(p)[0] for p in outs]).astype(np.float64)
    assert ((draws > 0) == (mean > 0)).all()
    painted = mean > 0
    spread = draws.std(axis=0)[painted] / mean[painted]  # relative std of one draw
    pull = (draws.mean(axis=0)[painted] / mean[painted] - 1) / (spread / np.sqrt(len(draws)))
    assert np.abs(pull).max() < 5 and abs(pull.mean()) < 5 / np.sqrt(painted.sum())


def test_galaxy_calibration_scales_each_galaxy_by_its_painted_mass_block_by_block(tmp_path):
    """Two galaxies of a 16^3 cube (origin (4, 4, 4) of a 32^3 parent) spread over chunk edges,
    and one voxel of no host: each galaxy's voxels are multiplied by the factor of its summed
    painted mass, the loner by the factor of its own, whatever the store's chunking."""
    from dm2gal.calibration import Calibration

    cube = np.zeros((16,) * 3, np.float32)
    cube[7:9, 7:9, 7:9] = 1e10 / 8  # galaxy A: 1e10 in total, across the chunk edge at 8
    cube[2, 2, 2:4] = 5e10          # galaxy B: 1e11 in total
    cube[14, 1, 1] = 1e11           # no subhalo reaches it
    attrs = field_attrs(box_size=16.0, n_grid=16, source="dark", snapshot=99, mas="CIC", quantity="stellar_mass",
                        origin=[4, 4, 4], parent_n_grid=32, parent_box_size=32.0)
    path = tmp_path / "painted.zarr"
    write_field(path, cube, attrs, chunk=8)
    # CIC clouds (Pylians' convention): A reaches parent voxels 11-12 on each axis, B (6, 6, 6-7)
    subs = {"SubhaloPos": np.array([[11.5, 11.5, 11.5], [6.0, 6.0, 6.5]]), "SubhaloMass": np.array([1e12, 1e13])}
    cal = Calibration((8.0, 12.0), (0.0, 0.0), 1.0, 12.0, galaxy_log10_mass=(9.0, 11.0),
                      galaxy_log10_ratio=(0.0, -0.3), galaxy_scatter_factor=(1.0, 0.5))
    ratio = paint.calibrate_galaxies(path, cal, (4, 4, 4), 32, 32.0, subs)
    out, _ = read_field(path)
    np.testing.assert_allclose(out[7:9, 7:9, 7:9], 1e10 / 8 * 10 ** -0.15, rtol=1e-6)
    np.testing.assert_allclose(out[2, 2, 2:4], 5e10 * 10 ** -0.3, rtol=1e-6)
    np.testing.assert_allclose(out[14, 1, 1], 1e11 * 10 ** -0.3, rtol=1e-6)
    assert np.count_nonzero(out) == np.count_nonzero(cube)
    assert ratio == pytest.approx(out.sum(dtype=np.float64) / cube.sum(dtype=np.float64), rel=1e-6)


def test_galaxy_deposit_puts_each_galaxy_at_its_subhalo_as_pylians_cic_does(tmp_path):
    """The cube and subhalos of the galaxy calibration's test: after `deposit_galaxies` the field
    is Pylians' CIC deposit of the galaxies' summed painted masses at their subhalos (renormalised
    to the cube where a cloud leaves it) plus the voxel no subhalo reaches, whatever the
    chunking; the total is kept, and each deposited voxel holds its galaxy's scatter (the
    mass-weighted rms of the galaxy's voxels times the scatter factor at its mass)."""
    from dm2gal.cic import deposit_cube

    cube, sigma = np.zeros((16,) * 3, np.float32), np.zeros((16,) * 3, np.float32)
    cube[7:9, 7:9, 7:9] = 1e10 / 8  # galaxy A, hosted by subhalo 0
    sigma[7:9, 7:9, 7:9] = 0.4
    cube[2, 2, 2:4] = 5e10          # galaxy B, hosted by subhalo 1: voxel scatters 0.3 and 0.5
    sigma[2, 2, 2:4] = [0.3, 0.5]
    cube[14, 1, 1], sigma[14, 1, 1] = 1e11, 0.2  # no subhalo reaches it
    attrs = field_attrs(box_size=16.0, n_grid=16, source="dark", snapshot=99, mas="CIC", quantity="stellar_mass",
                        origin=[4, 4, 4], parent_n_grid=32, parent_box_size=32.0)
    path, scatter_path = tmp_path / "painted.zarr", tmp_path / "scatter.zarr"
    write_field(path, cube, attrs, chunk=8)
    write_field(scatter_path, sigma, attrs, chunk=8)
    # off the grid points, so that each cloud spreads over 8 voxels; B's cloud leaves the cube (x, y < 4)
    subs = {"SubhaloPos": np.array([[11.7, 11.2, 11.9], [6.3, 6.2, 6.6]]), "SubhaloMass": np.array([1e12, 1e13])}
    knots = ([10.0, 11.0], [1.0, 0.5])  # the scatter factor: 1 at 1e10 (A), 0.5 at 1e11 (B)
    paint.deposit_galaxies(path, scatter_path, (4, 4, 4), 32, 32.0, subs, knots)
    out, out_attrs = read_field(path)
    out_sigma, sigma_attrs = read_field(scatter_path)
    expected = np.zeros((16,) * 3)
    for pos, total in zip(subs["SubhaloPos"], (1e10, 1e11)):
        cloud = deposit_cube(pos[None], np.array([1.0]), 32.0, 32, (4, 4, 4), 16).astype(np.float64)
        expected += total * cloud / cloud.sum()
    expected[14, 1, 1] += 1e11
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1.0)
    assert out.sum(dtype=np.float64) == pytest.approx(cube.sum(dtype=np.float64), rel=1e-6)
    cloud_a = deposit_cube(subs["SubhaloPos"][:1], np.array([1.0]), 32.0, 32, (4, 4, 4), 16) > 0
    cloud_b = (expected > 0) & ~cloud_a
    cloud_b[14, 1, 1] = False
    np.testing.assert_allclose(out_sigma[cloud_a], 0.4, rtol=1e-6)
    np.testing.assert_allclose(out_sigma[cloud_b], 0.5 * np.sqrt((0.3 ** 2 + 0.5 ** 2) / 2), rtol=1e-6)
    assert out_sigma[14, 1, 1] == pytest.approx(0.2 * 0.5)  # a galaxy of one voxel of 1e11: factor 0.5
    assert ((out_sigma > 0) == (out > 0)).all()
    assert out_attrs["deposit"] == sigma_attrs["deposit"] == "galaxies" and sigma_attrs["galaxy_scatter_factor"] == []
    # with the galaxy calibration, the one pass equals calibrating the field and then depositing it
    from dm2gal.calibration import Calibration

    cal = Calibration((8.0, 12.0), (0.0, 0.0), 1.0, 12.0, galaxy_log10_mass=(9.0, 11.0),
                      galaxy_log10_ratio=(0.0, -0.3), galaxy_scatter_factor=(1.0, 0.5))
    outs = {}
    for way in ("two passes", "one pass"):
        field, scat = tmp_path / f"{way}.zarr", tmp_path / f"{way} scatter.zarr"
        write_field(field, cube, attrs, chunk=8)
        write_field(scat, sigma, attrs, chunk=8)
        if way == "two passes":
            ratio = paint.calibrate_galaxies(field, cal, (4, 4, 4), 32, 32.0, subs)
            done = paint.deposit_galaxies(field, scat, (4, 4, 4), 32, 32.0, subs, knots)
        else:
            done = paint.deposit_galaxies(field, scat, (4, 4, 4), 32, 32.0, subs, knots, calibration=cal)
            assert done["galaxy_calibration"] == pytest.approx(ratio, rel=1e-6)
        outs[way] = read_field(field)[0], read_field(scat)[0], done["galaxy_deposit_voxels"]
    np.testing.assert_allclose(outs["one pass"][0], outs["two passes"][0], rtol=1e-6, atol=1.0)
    np.testing.assert_array_equal(outs["one pass"][1], outs["two passes"][1])
    assert outs["one pass"][2] == outs["two passes"][2] == np.count_nonzero(outs["one pass"][0])


@pytest.mark.parametrize("method", ["dense", "per_voxel"])
def test_slab_jobs_paint_the_single_jobs_field(fields, tmp_path, method):
    """A whole box painted as x-slab jobs (each reading its slab with the periodic receptive halo)
    and assembled equals the single job's field and scatter field, bit for bit for the dense
    method, and gives the same catalogue; the galaxy calibration, whose galaxies cross slab
    edges, is applied to the assembled field as to the single job's."""
    from dm2gal.calibration import Calibration
    from dm2gal.catalogue import read_catalogue

    root, paths, _, norm = fields
    torch.manual_seed(2)
    net = build_model(model_config("small", outputs=2)).eval()
    cal = Calibration((8.0, 12.0), (0.0, 0.0), 1.0, 12.0, galaxy_log10_mass=(8.0, 12.0),
                      galaxy_log10_ratio=(0.2, -0.4), galaxy_scatter_factor=(1.0, 0.5))
    ckpt, base, cubes, occ = stage_inputs(tmp_path, net, norm, n_subhalos=300, calibration=cal.as_dict())
    job = paint.Job(ckpt, paths["dm_mass"], paths["subhalo_mass"], paths["dm_mass"], cubes, "dark", whole_box=True,
                    occupancy_json=occ, subhalos=(base, 99))
    settings = paint.Settings(method=method, tile=8, batch=64, device="cpu")
    one = [tmp_path / f"one_{q}" for q in ("field.zarr", "scatter.zarr", "catalogue.hdf5")]
    paint.run(job, one[0], out_scatter=one[1], out_catalogue=one[2], settings=settings)
    plan = paint.SlabPlan.for_region(40, slabs=3, tile=8, stride=8, chunk=8)
    assert (plan.thickness, plan.n_slabs, plan.slab(2)) == (16, 3, (32, 8))  # the last slab is thinner
    slabs = [(tmp_path / f"slab_{s}.zarr", tmp_path / f"scatter_{s}.zarr") for s in range(plan.n_slabs)]
    for s, (f, sc) in enumerate(slabs):
        paint.paint_slab(job, plan, s, f, sc, settings=settings)
    many = [tmp_path / f"many_{q}" for q in ("field.zarr", "scatter.zarr", "catalogue.hdf5")]
    attrs = paint.assemble(job, plan, *zip(*slabs), *many)
    assert attrs["n_slabs"] == 3 and attrs["origin"] == [0, 0, 0] and attrs["method"] == method
    for a, b in zip(one[:2], many[:2]):
        (x, xa), (y, ya) = read_field(a), read_field(b)
        assert x.shape == y.shape == (40,) * 3 and (x > 0).sum() > 100
        if method == "dense":
            np.testing.assert_array_equal(x, y)
        else:  # other batches of patches: the same to float32 rounding
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6 * np.abs(x).max())
        assert {k: v for k, v in ya.items() if k != "n_slabs"} == xa
    (c1, _), (c2, _) = read_catalogue(one[2]), read_catalogue(many[2])
    np.testing.assert_allclose(c1["stellar_mass"], c2["stellar_mass"], rtol=1e-6)


def test_a_large_extra_run_is_planned_as_slab_jobs(tmp_path, repo):
    """paint.slabs: an extra run's painting becomes paint_slab jobs (each asking for a GPU, as paint
    does when paint.device auto meets a cluster that trains on GPUs) and one paint_assemble."""
    import subprocess
    import sys
    from pathlib import Path

    over = tmp_path / "slabs.yaml"
    over.write_text(f"results_dir: {tmp_path}/results\ndata_dir: {tmp_path}/data\n"
                    f"extra_runs: [{{name: big, base: {tmp_path}/data/dark/output}}]\n"
                    "paint: {slabs: 4}\ngrid: {n_grid: 256}\ntrain: {target: voxels}\n")  # slabs: the voxel painter
    snakemake = str(Path(sys.executable).parent / "snakemake")
    proc = subprocess.run([snakemake, "-s", str(repo / "Snakefile"), "-d", str(tmp_path), "--configfile",
                           str(repo / "config.yaml"), str(over), "-n", "--cores", "2",
                           f"{tmp_path}/results/paint/big/stellar_mass.zarr"], capture_output=True, text=True,
                          timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    blocks = [b for b in (proc.stdout + proc.stderr).split("rule ") if b.startswith("paint_")]
    slabs = sorted(b.split("slab=")[1].split()[0] for b in blocks if b.startswith("paint_slab:"))
    assert slabs == ["0", "1"]  # 256 planes in slabs of 128, the Zarr chunk edge
    assert all("gpu=1" in b for b in blocks if b.startswith("paint_slab:"))
    assert sum(b.startswith("paint_assemble:") for b in blocks) == 1
