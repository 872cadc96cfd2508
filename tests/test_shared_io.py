"""The shared I/O helpers: atomic outputs, TNG layout round trip, periodic field reads."""

import errno
import shutil
from collections import namedtuple

import h5py
import numpy as np
import pytest

from dm2gal import atomic, fields, tng
from dm2gal.atomic import atomic_path

COSMO = dict(BoxSize=20.0, Omega0=0.3089, OmegaLambda=0.6911, HubbleParam=0.6774,
             Redshift=0.0, Time=1.0)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_directory(tmp_path):
    final = tmp_path / "store"
    final.mkdir()
    (final / "old").write_text("x")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_full_disk_names_the_file_and_size_and_leaves_nothing(tmp_path, monkeypatch):
    """A chunk write of a Zarr field that fails with ENOSPC: the error says so, names the
    field and its size, and neither the field nor its temporary stays behind."""
    import zarr.storage._local as local_store

    written = []

    def full(path, value, exclusive=False):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real_put(path, value, exclusive)

    real_put = local_store._put
    monkeypatch.setattr(local_store, "_put", full)
    data = np.ones((32, 32, 32), np.float32)
    attrs = fields.field_attrs(box_size=10.0, n_grid=32, source="dark", snapshot=99, mas="CIC", quantity="dm_mass")
    path = tmp_path / "dm_mass.zarr"
    with pytest.raises(OSError, match=rf"no space left on device while writing {path} \(needs about 0.1 MB\)") as err:
        fields.write_field(path, data, attrs, chunk=16)
    assert err.value.errno == errno.ENOSPC and written
    assert list(tmp_path.iterdir()) == []


def test_full_disk_reported_by_a_c_writer_is_named(tmp_path, monkeypatch):
    """torch.save reports a full disk as `RuntimeError: [enforce fail at inline_container.cc:672]
    . unexpected pos`: with the disk full, it reads as ENOSPC, naming the checkpoint."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30, 0))
    final = tmp_path / "train" / "best.ckpt"
    with pytest.raises(OSError, match=f"no space left on device while writing {final} "
                                      r"\(needs more than the 1.0 MB written when the disk filled\)") as err:
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"x" * 2**20)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 34944 vs 34840")
    assert isinstance(err.value.__cause__, RuntimeError)
    assert list(final.parent.iterdir()) == []


def test_other_errors_are_not_taken_for_a_full_disk(tmp_path):
    assert shutil.disk_usage(tmp_path).free > atomic.FULL_BELOW_BYTES
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_path(tmp_path / "x") as tmp:
            tmp.write_text("half")
            raise RuntimeError("unexpected pos")
    assert list(tmp_path.iterdir()) == []


def test_tng_round_trip_through_illustris_python(tmp_path):
    import illustris_python as il

    rng = np.random.default_rng(0)
    n = 1000
    pos = rng.uniform(0, COSMO["BoxSize"], (n, 3))
    header = dict(COSMO, MassTable=np.array([0, 2.5e9, 0, 0, 0, 0]))
    tng.write_snapshot(tmp_path, 99, header,
                       {1: {"Coordinates": pos, "ParticleIDs": np.arange(n, dtype=np.uint64)}}, 3)
    # File units are TNG's: ckpc/h and 1e10 Msun/h.
    with h5py.File(tng.snapshot_path(tmp_path, 99, 0), "r") as f:
        assert f["Header"].attrs["BoxSize"] == pytest.approx(20000.0)
        assert f["Header"].attrs["MassTable"][1] == pytest.approx(0.25)
        assert f["PartType1/Coordinates"].dtype == np.float64
    got = il.snapshot.loadSubset(str(tmp_path), 99, "dm", ["Coordinates"])
    np.testing.assert_allclose(got / 1000.0, pos, rtol=1e-12)
    chunk_pos, chunk_mass = tng.read_particle_chunk(tmp_path, 99, 1)
    assert len(chunk_pos) == 333 or len(chunk_pos) == 334
    assert np.all(chunk_mass == pytest.approx(2.5e9))

    halos = {"GroupPos": pos[:5], "GroupMass": np.full(5, 1e12), "GroupNsubs": np.ones(5, np.int32)}
    subs = {"SubhaloPos": pos[:7], "SubhaloMassType": np.tile([0, 1e11, 0, 0, 1e9, 0], (7, 1)),
            "SubhaloGrNr": np.array([0, 0, 1, 2, 3, 4, 4], np.int32)}
    tng.write_groupcat(tmp_path, 99, header, halos, subs, 3)
    got = tng.load_subhalos(tmp_path, 99, ["SubhaloPos", "SubhaloMassType", "SubhaloGrNr"])
    assert got["count"] == 7
    np.testing.assert_allclose(got["SubhaloPos"], pos[:7], rtol=1e-6)
    np.testing.assert_allclose(got["SubhaloMassType"][:, 4], 1e9, rtol=1e-6)
    np.testing.assert_array_equal(got["SubhaloGrNr"], subs["SubhaloGrNr"])
    assert tng.load_halos(tmp_path, 99, ["GroupMass"])["GroupMass"] == pytest.approx(np.full(5, 1e12))


def test_truncated_chunk_is_named(tmp_path):
    header = dict(COSMO, MassTable=np.array([0, 1e9, 0, 0, 0, 0]))
    pos = np.random.default_rng(1).uniform(0, 20, (100, 3))
    paths = tng.write_snapshot(tmp_path, 99, header, {1: {"Coordinates": pos}}, 2)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(tng.CorruptChunkError, match="snap_099.1.hdf5"):
        tng.read_particle_chunk(tmp_path, 99, 1)


def test_read_periodic_wraps_like_numpy_take(tmp_path):
    data = np.arange(16**3, dtype=np.float32).reshape(16, 16, 16)
    attrs = fields.field_attrs(box_size=10.0, n_grid=16, source="test", snapshot=99,
                               mas="CIC", quantity="test")
    fields.write_field(tmp_path / "f.zarr", data, attrs, chunk=8)
    arr = fields.open_field(tmp_path / "f.zarr")
    assert dict(arr.attrs)["box_size"] == 10.0
    start, size = (-3, 14, 5), (7, 6, 20)
    expected = data
    for axis, (a, s) in enumerate(zip(start, size)):
        expected = np.take(expected, np.arange(a, a + s) % 16, axis=axis)
    np.testing.assert_array_equal(fields.read_periodic(arr, start, size), expected)
