"""The grid stage: CIC fields by the whole-box (MA) and slab paths, held to Pylians' MAS_library.MA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import MAS_library as MASL
import numpy as np
import pytest
import zarr

from dm2gal import tng
from dm2gal.cic import deposit, wrap_positions
from dm2gal.fields import read_field
from dm2gal.grid import FieldSource, SlabPlan, assemble, build_box, deposit_box, gather, scatter

BOX = 25.0
SNAP = 99
M_DM = 3.7e8
HEADER = dict(BoxSize=BOX, MassTable=np.array([0, M_DM, 0, 0, 0, 0], dtype=float), Omega0=0.3089,
              OmegaLambda=0.6911, HubbleParam=0.6774, Redshift=0.0, Time=1.0)


def clustered(rng, n, n_blobs=12, sigma=0.6):
    """Gaussian blobs (some straddling the box edges) plus a uniform background, wrapped into the box."""
    centres = rng.random((n_blobs, 3)) * BOX
    centres[:3, 0] = [0.1, BOX - 0.1, BOX / 2]  # blobs across x = 0 = BoxSize
    n_blob = n // 2
    pos = np.concatenate([centres[rng.integers(0, n_blobs, n_blob)] + rng.normal(0, sigma, (n_blob, 3)),
                          rng.random((n - n_blob, 3)) * BOX])
    return np.mod(pos, BOX)


def add_empty_chunk(base, snap):
    """Append a snapshot chunk holding no particles (TNG has such files) and update NumFilesPerSnapshot."""
    n = int(tng.snapshot_header(base, snap, 0)["NumFilesPerSnapshot"])
    with h5py.File(tng.snapshot_path(base, snap, 0), "r") as src, \
            h5py.File(tng.snapshot_path(base, snap, n), "w") as dst:
        h = dst.create_group("Header")
        h.attrs.update(src["Header"].attrs)
        h.attrs["NumPart_ThisFile"] = np.zeros(6, dtype=np.int32)
    for chunk in range(n + 1):
        with h5py.File(tng.snapshot_path(base, snap, chunk), "r+") as f:
            f["Header"].attrs["NumFilesPerSnapshot"] = np.int32(n + 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small TNG-layout run: clustered DM + star particles in 3 chunks and an empty 4th, and a catalogue."""
    rng = np.random.default_rng(7)
    base = tmp_path_factory.mktemp("run") / "output"
    dm = clustered(rng, 30_000)
    dm[:4] = [[BOX, 3.0, 4.0], [0.0, BOX, 1.0], [BOX - 1e-9, 2.0, BOX], [BOX / 2, BOX / 2, BOX / 2]]
    stars = clustered(rng, 4_000)
    formed = rng.uniform(-0.2, 1.0, len(stars))  # negative: wind cells, not stars
    particles = {
        1: {"Coordinates": dm, "ParticleIDs": np.arange(len(dm), dtype=np.uint64)},
        4: {"Coordinates": stars, "Masses": rng.lognormal(np.log(1e6), 0.5, len(stars)),
            "GFM_StellarFormationTime": formed, "ParticleIDs": np.arange(len(stars), dtype=np.uint64)},
    }
    tng.write_snapshot(base, SNAP, HEADER, particles, n_chunks=3)
    add_empty_chunk(base, SNAP)
    n_sub = 500
    mass_type = np.zeros((n_sub, 6))
    mass_type[:, 1] = 10 ** rng.uniform(9, 13, n_sub)
    mass_type[:, 4] = np.where(rng.random(n_sub) < 0.7, 10 ** rng.uniform(7, 11, n_sub), 0.0)
    subhalos = {"SubhaloPos": clustered(rng, n_sub), "SubhaloMass": mass_type.sum(axis=1),
                "SubhaloMassType": mass_type,
                # the mini-universe's noise-free mean M*: independent of the drawn one here
                "SubhaloStellarMassMean": 10 ** rng.uniform(7, 11, n_sub)}
    halos = {"GroupPos": rng.random((50, 3)) * BOX, "GroupMass": 10 ** rng.uniform(10, 14, 50)}
    tng.write_groupcat(base, SNAP, HEADER, halos, subhalos, n_chunks=2)
    return dict(base=base, dm=dm, stars=stars[formed > 0], star_mass=particles[4]["Masses"][formed > 0],
                subhalos=subhalos)


def ma_reference(pos, mass, n_grid):
    """One MASL.MA call on all positions of the box."""
    grid = np.zeros((n_grid,) * 3, dtype=np.float32)
    MASL.MA(wrap_positions(pos, BOX), grid, BOX, MAS="CIC", W=np.asarray(mass, np.float32), verbose=False)
    return grid


def build_slabs(source, plan, tmp_path):
    buckets = [tmp_path / f"scatter_{c}.h5" for c in range(source.n_chunks())]
    for c, path in enumerate(buckets):
        scatter(source, c, plan, path)
    slabs = [tmp_path / f"slab_{s}.zarr" for s in range(plan.n_slabs)]
    for s, path in enumerate(slabs):
        gather(buckets, s, plan, path)
    out = tmp_path / "field.zarr"
    assemble(slabs, source, plan, out)
    return read_field(out)


def assert_equal_to_ma(field, reference):
    assert np.abs(field - reference).max() <= 1e-5 * reference.max()


def test_deposit_matches_ma_on_whole_box_and_on_wrapped_slabs():
    rng = np.random.default_rng(1)
    n = 24
    pos = wrap_positions(rng.random((50_000, 3)) * 1.4 * BOX - 0.2 * BOX, BOX)  # positions outside, wrapped
    mass = rng.lognormal(20, 1, len(pos)).astype(np.float32)
    reference = ma_reference(pos, mass, n)
    whole = np.zeros((n, n, n), np.float32)
    deposit(whole, pos, mass, BOX)
    assert_equal_to_ma(whole, reference)
    slab = np.zeros((7, n, n), np.float32)  # planes 20..23, 0..2: wraps through x = BoxSize
    deposit(slab, pos, mass, BOX, x0=20)
    assert_equal_to_ma(slab, np.concatenate([reference[20:], reference[:3]]))


def test_deposit_uses_ma_float32_arithmetic():
    """Isolated heavy particles at n=128: MA's float32 fractions err by ~n * 6e-8 = 8e-6 of a
    particle's mass, a float64 CIC would differ from MA by that much; ours agrees to rounding."""
    rng = np.random.default_rng(2)
    n = 128
    pos = wrap_positions(rng.random((3000, 3)) * BOX, BOX)
    mass = (10 ** rng.uniform(8, 13, len(pos))).astype(np.float32)
    reference = ma_reference(pos, mass, n)
    ours = np.zeros((n, n, n), np.float32)
    deposit(ours, pos, mass, BOX)
    assert np.abs(ours - reference).max() <= 1e-6 * reference.max()


def test_deposit_equals_ma_on_random_clustered_particles_slab_by_slab():
    """200k random particles (clustered, some exactly at 0 and BoxSize, float64 inputs) on 64^3:
    the whole box and every slab of 16 planes (each given all particles) equal one MA call."""
    rng = np.random.default_rng(4)
    n = 64
    pos = wrap_positions(clustered(rng, 200_000), BOX)
    pos[:3] = [[0.0, 0.0, 0.0], [BOX, BOX, BOX], [BOX, 0.0, BOX / 3]]
    mass = 10 ** rng.uniform(8, 11, len(pos))  # float64: deposit casts to float32 as MA's W
    reference = ma_reference(pos, mass, n)
    whole = np.zeros((n, n, n), np.float32)
    deposit(whole, pos.astype(np.float64), mass, BOX)
    assert_equal_to_ma(whole, reference)
    slabs = []
    for x0 in range(0, n, 16):
        slab = np.zeros((16, n, n), np.float32)
        deposit(slab, pos, mass, BOX, x0=x0)
        slabs.append(slab)
    assert_equal_to_ma(np.concatenate(slabs), reference)
    assert np.isclose(whole.sum(dtype=np.float64), mass.astype(np.float32).sum(dtype=np.float64), rtol=1e-6)


def test_deposit_refuses_positions_that_are_not_wrapped():
    n = 8
    out = np.zeros((n, n, n), np.float32)
    deposit(out, np.zeros((0, 3), np.float32), np.zeros(0), BOX)  # no particles: nothing to do
    assert not out.any()
    for bad in (-0.01, np.nan, np.inf, BOX * (1 + 1.5 / n)):
        pos = np.array([[1.0, 2.0, 3.0], [1.0, bad, 3.0]], np.float32)
        with pytest.raises(ValueError, match="wrap"):
            deposit(out, pos, np.ones(2), BOX)
    with pytest.raises(ValueError, match="float32"):
        deposit(np.zeros((2, n, n)), pos, np.ones(2), BOX)
    with pytest.raises(ValueError, match="masses"):
        deposit(out, pos, np.ones(3), BOX)


@pytest.mark.parametrize("thickness", [8, 16, 32])
def test_slab_path_equals_one_ma_call_and_the_box_path(run, tmp_path, thickness):
    n = 32
    source = FieldSource("dark", str(run["base"]), SNAP, "dm_mass")
    assert source.n_chunks() == 4  # three filled chunks and the empty one
    field, attrs = build_slabs(source, SlabPlan(n, thickness, 8), tmp_path)
    reference = ma_reference(run["dm"], np.full(len(run["dm"]), M_DM), n)
    assert_equal_to_ma(field, reference)
    total = len(run["dm"]) * M_DM
    assert abs(field.sum(dtype=np.float64) / total - 1) < 1e-6
    box, _ = deposit_box(source, n)
    assert_equal_to_ma(field, box)
    assert attrs["n_slabs"] == n // thickness
    assert (attrs["box_size"], attrs["n_grid"], attrs["units"], attrs["mas"], attrs["quantity"], attrs["source"]) == \
        (BOX, n, "Msun/h", "CIC", "dm_mass", "dark")


def test_box_path_writes_the_ma_field_with_attributes(run, tmp_path):
    n = 32
    source = FieldSource("dark", str(run["base"]), SNAP, "dm_mass")
    out = tmp_path / "dm_mass.zarr"
    build_box(source, n, out, chunk=16)
    field, attrs = read_field(out)
    assert field.dtype == np.float32
    assert zarr.open_array(str(out)).chunks == (16, 16, 16)
    reference = ma_reference(run["dm"], np.full(len(run["dm"]), M_DM), n)
    assert_equal_to_ma(field, reference)
    assert abs(field.sum(dtype=np.float64) / (len(run["dm"]) * M_DM) - 1) < 1e-6
    assert attrs["snapshot"] == SNAP and attrs["path"] == "box"
    assert attrs["total_mass"] == pytest.approx(len(run["dm"]) * M_DM, rel=1e-12)


@pytest.mark.parametrize("quantity, name, column", [("subhalo_mass", "SubhaloMass", None),
                                                    ("stellar_mass", "SubhaloMassType", 4),
                                                    ("stellar_mass_ideal", "SubhaloStellarMassMean", None)])
def test_catalogue_fields_by_both_paths(run, tmp_path, quantity, name, column):
    n = 32
    sub = run["subhalos"]
    mass = sub[name] if column is None else sub[name][:, column]
    reference = ma_reference(sub["SubhaloPos"], mass, n)
    source = FieldSource("x", str(run["base"]), SNAP, quantity)
    assert source.n_chunks() == 1
    field, _ = build_slabs(source, SlabPlan(n, 8, 8), tmp_path)
    assert_equal_to_ma(field, reference)
    assert abs(field.sum(dtype=np.float64) / mass.sum() - 1) < 1e-6
    box, _ = deposit_box(source, n)
    assert_equal_to_ma(box, reference)


def test_ideal_field_needs_the_mini_universe_mean(tmp_path):
    """An archive catalogue has no SubhaloStellarMassMean: the ideal field is refused, naming it."""
    base = tmp_path / "output"
    subhalos = {"SubhaloPos": np.full((10, 3), 1.0), "SubhaloMass": np.ones(10), "SubhaloMassType": np.ones((10, 6))}
    tng.write_groupcat(base, SNAP, HEADER, {"GroupMass": np.ones(4)}, subhalos, n_chunks=1)
    with pytest.raises(Exception, match="SubhaloStellarMassMean"):
        FieldSource("hydro", str(base), SNAP, "stellar_mass_ideal").read(0)


def test_star_particles_skip_wind_cells(run, tmp_path):
    n = 16
    source = FieldSource("hydro", str(run["base"]), SNAP, "stellar_mass", stellar_source="particles")
    field, _ = build_slabs(source, SlabPlan(n, 4, 4), tmp_path)
    assert_equal_to_ma(field, ma_reference(run["stars"], run["star_mass"], n))


def test_wrap_at_box_edges_by_hand(tmp_path):
    """A particle exactly at x = BoxSize lands on plane 0; one half a cell below splits between planes n-1 and 0."""
    n, h = 16, BOX / 16
    pos = np.array([[BOX, 2.5 * h, 3 * h], [BOX - 0.5 * h, BOX, 5 * h], [0.25 * h, 7 * h, BOX - 0.25 * h]])
    mass = np.array([1e10, 2e10, 4e10])
    base = tmp_path / "output"
    tng.write_snapshot(base, SNAP, HEADER, {4: {"Coordinates": pos, "Masses": mass,
                                              "ParticleIDs": np.arange(3, dtype=np.uint64)}}, n_chunks=2)
    expected = np.zeros((n, n, n))
    expected[0, 2, 3] = expected[0, 3, 3] = 0.5e10
    expected[n - 1, 0, 5] = expected[0, 0, 5] = 1e10
    expected[0, 7, n - 1] = 0.75 * 0.25 * 4e10  # z = n - 1/4 cells: 1/4 on plane n-1, 3/4 on plane 0
    expected[1, 7, n - 1] = 0.25 * 0.25 * 4e10
    expected[0, 7, 0] = 0.75 * 0.75 * 4e10
    expected[1, 7, 0] = 0.25 * 0.75 * 4e10
    source = FieldSource("edge", str(base), SNAP, "stellar_mass", stellar_source="particles")
    field, _ = build_slabs(source, SlabPlan(n, 4, 4), tmp_path)
    np.testing.assert_allclose(field, expected, rtol=1e-6, atol=1e-6 * mass.max())
    box, _ = deposit_box(source, n)
    np.testing.assert_allclose(box, expected, rtol=1e-6, atol=1e-6 * mass.max())


def test_empty_chunk_gives_empty_buckets(run, tmp_path):
    source = FieldSource("dark", str(run["base"]), SNAP, "dm_mass")
    counts = scatter(source, 3, SlabPlan(32, 8, 8), tmp_path / "empty.h5")
    assert counts.tolist() == [0, 0, 0, 0]
    with h5py.File(tmp_path / "empty.h5") as f:
        assert f["slab_2/pos"].shape == (0, 3) and f.attrs["mass_read"] == 0


def test_corrupt_chunk_names_the_file(run, tmp_path):
    base = tmp_path / "output"
    rng = np.random.default_rng(3)
    tng.write_snapshot(base, SNAP, HEADER, {1: {"Coordinates": rng.random((2000, 3)) * BOX,
                                              "ParticleIDs": np.arange(2000, dtype=np.uint64)}}, n_chunks=2)
    bad = tng.snapshot_path(base, SNAP, 1)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated transfer
    source = FieldSource("dark", str(base), SNAP, "dm_mass")
    with pytest.raises(tng.CorruptChunkError, match=str(bad)):
        scatter(source, 1, SlabPlan(16, 8, 8), tmp_path / "b.h5")
    with pytest.raises(tng.CorruptChunkError, match=str(bad)):
        build_box(source, 16, tmp_path / "f.zarr")
    assert not (tmp_path / "b.h5").exists() and not (tmp_path / "f.zarr").exists()


def test_corrupt_catalogue_chunk_names_the_file(run, tmp_path):
    base = tmp_path / "output"
    subhalos = {"SubhaloPos": np.full((10, 3), 1.0), "SubhaloMass": np.ones(10)}
    tng.write_groupcat(base, SNAP, HEADER, {"GroupMass": np.ones(4)}, subhalos, n_chunks=3)
    bad = tng.groupcat_path(base, SNAP, 2)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(tng.CorruptChunkError, match=str(bad)):
        FieldSource("dark", str(base), SNAP, "subhalo_mass").read(0)


def test_slab_plan_rejects_slabs_that_split_zarr_chunks():
    with pytest.raises(ValueError, match="multiple of the Zarr chunk"):
        SlabPlan(64, 12, 8)
    assert SlabPlan.from_config(n_grid=128, slab_thickness=256, chunk=128).n_slabs == 1
    assert SlabPlan.from_config(n_grid=2048, slab_thickness=128, chunk=128).n_slabs == 16


@pytest.mark.slow
def test_rules_box_and_slabs_give_the_same_field_and_n_grid_change_reruns_grid(run, tmp_path, repo):
    """Snakemake end to end on an extra run (no acquire needed): both methods, then a dry run after changing n_grid."""
    snakemake = Path(sys.executable).parent / "snakemake"
    targets = ["fields/ext/dm_mass.zarr", "fields/ext/subhalo_mass.zarr"]

    def config(name, **grid):
        grid = {"n_grid": 32, "chunk": 8, "slab_thickness": 8, **grid}
        path = tmp_path / f"{name}.yaml"
        # statistics the coarse test cube resolves (checked when the workflow loads): 13^3 voxels
        # of the 50 Mpc/h box at n_grid 32 have k_Nyquist 2 h/Mpc
        stats = {"k_range": [0.5, 2.0], "k_split": 1.0, "r_at_k": 1.0, "bk": {"triangles": [[0.7, 0.9]]}}
        path.write_text(json.dumps(dict(results_dir=name, grid=grid, stats=stats,
                                       extra_runs=[dict(name="ext", base=str(run["base"]), snapshot=SNAP)])))
        return path

    def smk(name, *flags, **grid):
        cmd = [str(snakemake), *[f"{name}/{t}" for t in targets], "--cores", "1", "-s", str(repo / "Snakefile"),
               *flags, "--configfile", str(repo / "config.yaml"), str(config(name, **grid))]
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout + out.stderr

    smk("box", method="box")
    smk("slabs", method="slabs")
    for t in targets:
        box, box_attrs = read_field(tmp_path / "box" / t)
        slabs, slab_attrs = read_field(tmp_path / "slabs" / t)
        assert_equal_to_ma(slabs, box)
        assert (box_attrs["path"], slab_attrs["path"], slab_attrs["n_slabs"]) == ("box", "slabs", 4)
    assert not (tmp_path / "slabs" / "fields" / ".work").exists()  # temp buckets and slabs removed
    dry = smk("slabs", "-n", method="slabs", n_grid=64)
    assert "Params have changed since last execution" in dry
    assert "grid_scatter" in dry and "grid_gather" in dry and "grid_assemble" in dry
