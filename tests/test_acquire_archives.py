"""Acquisition from the archives (tng, camels, local) against a local emulator of the TNG web API.

The emulator (tests/tng_emulator.py) serves a small run pair written with
dm2gal.tng's writers and injects the faults the real archive shows: 429, 5xx,
connections dropped mid-file, corrupt and truncated bodies, a redirect to another
host, a bad key.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from dm2gal import tng
from dm2gal.acquire import camels, http, local, manifest, tng_api
from tng_emulator import TNGEmulator

SNAP = 99
KEY = "s3cret-test-key-0123456789"
FAST = http.Policy(retries=4, backoff_s=0.0, max_backoff_s=0.0, connect_timeout_s=5, read_timeout_s=5)
COSMO = dict(BoxSize=20.0, Omega0=0.3089, OmegaLambda=0.6911, HubbleParam=0.6774, Redshift=0.0, Time=1.0)
RUNS = {"dark": "TNG-Mini-Dark", "hydro": "TNG-Mini"}


def write_run(base: Path, hydro: bool, n_snap: int, n_groups: int, seed: int) -> None:
    """A small TNG-layout run: DM (and gas, stars for hydro) over `n_snap` chunks, a catalogue over `n_groups`."""
    rng = np.random.default_rng(seed)
    n_dm = 4000
    particles = {1: {"Coordinates": rng.uniform(0, COSMO["BoxSize"], (n_dm, 3)),
                     "ParticleIDs": np.arange(n_dm, dtype=np.uint64)}}
    if hydro:
        particles[0] = {"Coordinates": rng.uniform(0, 20, (3000, 3)), "Masses": rng.uniform(1e8, 2e8, 3000)}
        particles[4] = {"Coordinates": rng.uniform(0, 20, (500, 3)), "Masses": rng.uniform(1e6, 1e7, 500),
                        "GFM_StellarFormationTime": rng.uniform(-0.1, 1.0, 500)}
    header = dict(COSMO, MassTable=np.array([0, 5e9 if hydro else 6e9, 0, 0, 0, 0]))
    tng.write_snapshot(base, SNAP, header, particles, n_chunks=n_snap)
    n_h, n_s = 60, 150
    halos = {"GroupPos": rng.uniform(0, 20, (n_h, 3)), "GroupMass": 10 ** rng.uniform(10, 14, n_h)}
    subs = {"SubhaloPos": rng.uniform(0, 20, (n_s, 3)), "SubhaloMass": 10 ** rng.uniform(9, 13, n_s),
            "SubhaloMassType": 10 ** rng.uniform(7, 11, (n_s, 6)),
            "SubhaloGrNr": np.sort(rng.integers(0, n_h, n_s)).astype(np.int32)}
    tng.write_groupcat(base, SNAP, header, halos, subs, n_chunks=n_groups)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    """Archive-side copies of the pair: different chunk counts per run and per kind."""
    root = tmp_path_factory.mktemp("archive")
    write_run(root / RUNS["dark"], hydro=False, n_snap=4, n_groups=2, seed=1)
    write_run(root / RUNS["hydro"], hydro=True, n_snap=3, n_groups=3, seed=2)
    return {run: root / run for run in RUNS.values()}


@pytest.fixture
def emulator(archive):
    emu = TNGEmulator(archive, SNAP, key=KEY)
    emu.start()
    yield emu
    emu.stop()
    assert not emu.overflow, "a client looped past the emulator's request budget"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("TNG_API_KEY", KEY)


def listing(tmp_path, emu, run, kinds=tng_api.KINDS):
    return tng_api.fetch_listing(tmp_path / f"{run}.json", emu.base_url, run, SNAP, kinds=kinds, policy=FAST)


def chunk_path(run_sim, kind, chunk, tmp_path):
    path_of = tng.snapshot_path if kind == "snapshot" else tng.groupcat_path
    return path_of(tmp_path / run_sim / "output", SNAP, chunk)


def fetch(tmp_path, sim, kind, chunk):
    """Fetch one chunk of RUNS[sim] (only dark-matter coordinates of a snapshot) with the listing
    already in tmp_path; returns its final path."""
    dest = chunk_path(sim, kind, chunk, tmp_path)
    fields = {"dm": ["Coordinates"]} if kind == "snapshot" else None
    tng_api.fetch_chunk(tmp_path / f"{RUNS[sim]}.json", kind, chunk, dest, fields=fields, policy=FAST)
    return dest


def faulted(tmp_path, emu, sim, kind, chunk, *faults):
    """Fetch the listing of RUNS[sim], then give one chunk's archive path `faults`; returns (run, path)."""
    run = RUNS[sim]
    listing(tmp_path, emu, run)
    path = f"/api/{run}/files/{kind}-{SNAP}.{chunk}.hdf5"
    emu.fault(path, *faults)
    return run, path


# --- the HTTP layer ------------------------------------------------------------------


def test_listing_counts_chunks_and_reads_checksums(tmp_path, emulator, api_key, archive):
    doc = listing(tmp_path, emulator, RUNS["dark"])
    assert tng_api.chunk_count(doc, "snapshot") == 4 and tng_api.chunk_count(doc, "groupcat") == 2
    assert doc["snapshot"]["sha256"] == {}  # the snapshot checksum endpoint is absent (404)
    expected = manifest.sha256(tng.groupcat_path(archive[RUNS["dark"]], SNAP, 1))
    assert doc["groupcat"]["sha256"]["1"] == expected
    assert all(r.key_ok for r in emulator.requests)


def test_subset_chunk_holds_only_requested_fields(tmp_path, emulator, api_key, archive):
    listing(tmp_path, emulator, RUNS["hydro"])
    dest = chunk_path("hydro", "snapshot", 1, tmp_path)
    tng_api.fetch_chunk(tmp_path / f"{RUNS['hydro']}.json", "snapshot", 1, dest,
                        fields={"stars": ["Coordinates", "Masses"]}, policy=FAST)
    with h5py.File(dest) as f, h5py.File(tng.snapshot_path(archive[RUNS["hydro"]], SNAP, 1)) as src:
        assert sorted(f) == ["Header", "PartType4"]
        assert sorted(f["PartType4"]) == ["Coordinates", "Masses"]
        np.testing.assert_array_equal(f["PartType4/Masses"][()], src["PartType4/Masses"][()])
    assert emulator.hits("snapshot-99.1.hdf5")[0].query == "stars=Coordinates%2CMasses"


def test_dropped_connection_resumes_with_range(tmp_path, emulator, api_key, archive):
    run, path = faulted(tmp_path, emulator, "dark", "snapshot", 2, "drop", "drop")
    dest = fetch(tmp_path, "dark", "snapshot", 2)
    hits = emulator.hits(path)
    assert len(hits) == 3
    assert hits[0].range is None
    starts = [int(h.range.split("=")[1].rstrip("-")) for h in hits[1:]]
    assert 0 < starts[0] < starts[1]  # each retry resumed where the last one stopped
    full = emulator._body(run, "snapshot", 2, {"dm": ["Coordinates"]})
    assert dest.read_bytes() == full
    assert not dest.with_name(dest.name + ".part").exists()


def test_throttling_and_server_errors_are_retried(tmp_path, emulator, api_key):
    run = RUNS["dark"]
    emulator.fault(f"/api/{run}/files/groupcat-{SNAP}/", "429", "503")
    _, path = faulted(tmp_path, emulator, "dark", "groupcat", 0, "429", "429", "503")
    waits = []
    dest = chunk_path("dark", "groupcat", 0, tmp_path)
    url = json.loads((tmp_path / f"{run}.json").read_text())["groupcat"]["urls"][0]
    http.download(url, dest, secret_headers={"api-key": KEY}, policy=FAST, sleep=waits.append)
    assert len(emulator.hits(path)) == 4 and len(waits) == 3
    manifest.check_groupcat_chunk(dest)


def test_retry_after_is_honoured_and_bounded():
    response = type("R", (), {"headers": {"Retry-After": "7"}})()
    assert http.retry_after(response, 1.0) == 7.0
    response.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # in the past
    assert http.retry_after(response, 1.0) == 0.0
    response.headers = {}
    assert http.retry_after(response, 3.0) == 3.0


def test_retries_are_bounded_and_nothing_reaches_the_final_path(tmp_path, emulator, api_key):
    run, path = faulted(tmp_path, emulator, "dark", "groupcat", 1, *["503"] * 50)
    dest = chunk_path("dark", "groupcat", 1, tmp_path)
    with pytest.raises(http.DownloadError, match="giving up after 4 retries"):
        tng_api.fetch_chunk(tmp_path / f"{run}.json", "groupcat", 1, dest, policy=FAST)
    assert len(emulator.hits(path)) == FAST.retries + 1
    assert not dest.exists()


def test_interrupted_download_keeps_part_and_next_run_resumes(tmp_path, emulator, api_key):
    run, path = faulted(tmp_path, emulator, "hydro", "groupcat", 2, *["drop"] * 3)
    dest = chunk_path("hydro", "groupcat", 2, tmp_path)
    policy = http.Policy(retries=0, backoff_s=0, max_backoff_s=0)
    with pytest.raises(http.DownloadError):
        tng_api.fetch_chunk(tmp_path / f"{run}.json", "groupcat", 2, dest, policy=policy)
    part = dest.with_name(dest.name + ".part")
    assert not dest.exists()
    part_size = part.stat().st_size
    assert part_size > 0
    emulator.faults.clear()
    tng_api.fetch_chunk(tmp_path / f"{run}.json", "groupcat", 2, dest, policy=FAST)
    assert emulator.hits(path)[-1].range == f"bytes={part_size}-"  # resumed, not restarted
    manifest.check_groupcat_chunk(dest)


def test_wrong_checksum_is_fetched_again(tmp_path, emulator, api_key, archive):
    run, path = faulted(tmp_path, emulator, "hydro", "groupcat", 0, "corrupt")
    dest = fetch(tmp_path, "hydro", "groupcat", 0)
    assert len(emulator.hits(path)) == 2
    assert dest.read_bytes() == tng.groupcat_path(archive[run], SNAP, 0).read_bytes()


def test_truncated_hdf5_is_detected_and_fetched_again(tmp_path, emulator, api_key):
    """No checksum applies to a field subset: the HDF5 check must catch the bad chunk."""
    _, path = faulted(tmp_path, emulator, "dark", "snapshot", 0, "truncate")
    dest = fetch(tmp_path, "dark", "snapshot", 0)
    assert len(emulator.hits(path)) == 2
    assert manifest.check_snapshot_chunk(dest, [1])[1] == 1000


def test_server_ignoring_range_restarts_cleanly(tmp_path, emulator, api_key, archive):
    run, path = faulted(tmp_path, emulator, "dark", "groupcat", 0, "drop", "ignore_range")
    dest = fetch(tmp_path, "dark", "groupcat", 0)
    assert dest.read_bytes() == tng.groupcat_path(archive[run], SNAP, 0).read_bytes()


def test_redirect_is_followed_without_leaking_the_key(tmp_path, emulator, api_key, archive):
    run, path = faulted(tmp_path, emulator, "dark", "snapshot", 3, "redirect")
    emulator.fault(f"/data/signed-token{path}", "drop")
    dest = fetch(tmp_path, "dark", "snapshot", 3)
    data_hits = [r for r in emulator.requests if r.path.startswith("/data/")]
    assert data_hits and all(r.host.startswith("localhost") and not r.had_key for r in data_hits)
    assert data_hits[0].query == "dm=Coordinates"
    assert dest.read_bytes() == emulator._body(run, "snapshot", 3, {"dm": ["Coordinates"]})


def test_key_policy_keeps_sibling_hosts():
    allowed = http.same_site("https://www.tng-project.org/api/TNG100-1/")
    assert allowed("www.tng-project.org") and allowed("data-eu.tng-project.org")
    assert not allowed("storage.example.com") and not allowed("tng-project.org.evil.com")
    assert not http.same_site("http://127.0.0.1:8000/api/")("localhost")


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_stops_at_once_naming_the_variable(tmp_path, archive, monkeypatch, status):
    monkeypatch.setenv("TNG_API_KEY", "wrong-key-value")
    with TNGEmulator(archive, SNAP, key=KEY, auth_status=status) as emu:
        with pytest.raises(http.AuthError) as err:
            listing(tmp_path, emu, RUNS["dark"])
        assert len(emu.requests) == 1
    assert "TNG_API_KEY" in str(err.value) and "wrong-key-value" not in str(err.value)
    assert f"HTTP {status}" in str(err.value)


def test_missing_key_fails_before_any_request(tmp_path, emulator, monkeypatch):
    monkeypatch.delenv("TNG_API_KEY", raising=False)
    with pytest.raises(http.AuthError, match="TNG_API_KEY"):
        listing(tmp_path, emulator, RUNS["dark"])
    assert emulator.requests == []


def test_listing_fallback_uses_configured_count(tmp_path, archive, api_key):
    with TNGEmulator(archive, SNAP, key=KEY, listings=False) as emu:
        with pytest.raises(http.DownloadError, match="fallback|chunk count"):
            listing(tmp_path, emu, RUNS["dark"])
        doc = tng_api.fetch_listing(tmp_path / "l.json", emu.base_url, RUNS["dark"], SNAP,
                                    chunks={"snapshot": 4, "groupcat": 2}, policy=FAST)
    assert doc["snapshot"]["urls"][3].endswith(f"/files/snapshot-{SNAP}.3.hdf5")


def test_listing_parser_accepts_both_layouts_and_rejects_gaps():
    urls = [f"https://x/api/R/files/groupcat-99.{i}.hdf5" for i in (2, 0, 1)]
    assert tng_api.chunk_urls({"files": urls}, "groupcat") == sorted(urls)
    assert tng_api.chunk_urls([{"url": u} for u in urls], "groupcat") == sorted(urls)
    with pytest.raises(http.DownloadError):
        tng_api.chunk_urls({"files": urls[:2]}, "groupcat")  # chunks 2 and 0: 1 missing


# --- camels and local -----------------------------------------------------------------


CAMELS_SNAP = 90
CAMELS_RUNS = {"hydro": "IllustrisTNG/L25n256/CV/CV_0", "dark": "IllustrisTNG_DM/L25n256/CV/CV_0"}


@pytest.fixture
def camels_site(tmp_path):
    """A CAMELS-like static file server on 127.0.0.1 (no key): single files, catalogues without NumFiles."""
    root = tmp_path / "server"
    for sim, run_path in CAMELS_RUNS.items():
        src = root / run_path
        write_run(src / "tmp", hydro=sim == "hydro", n_snap=1, n_groups=1, seed=5)
        os.replace(tng.snapshot_path(src / "tmp", SNAP, 0), src / f"snapshot_{CAMELS_SNAP:03d}.hdf5")
        os.replace(tng.groupcat_path(src / "tmp", SNAP, 0), src / f"groups_{CAMELS_SNAP:03d}.hdf5")
        with h5py.File(src / f"groups_{CAMELS_SNAP:03d}.hdf5", "r+") as f:
            del f["Header"].attrs["NumFiles"]
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_camels_single_files_become_one_chunk_tng_runs(tmp_path, camels_site):
    import illustris_python as il

    base = tmp_path / "data" / "hydro" / "output"
    for kind in ("snapshot", "groupcat"):
        camels.fetch(camels.file_url(camels_site, CAMELS_RUNS["hydro"], kind, CAMELS_SNAP), base,
                     CAMELS_SNAP, kind, policy=FAST)
    assert tng.groupcat_path(base, CAMELS_SNAP, 0).exists() and tng.snapshot_path(base, CAMELS_SNAP, 0).exists()
    subs = il.groupcat.loadSubhalos(str(base), CAMELS_SNAP, fields=["SubhaloMass"])
    assert len(subs) == 150
    m = manifest.write_manifest(tmp_path / "data" / "hydro", CAMELS_SNAP, "camels")
    assert m["num_part_total"][4] == 500 and len(m["groupcat_chunks"]) == 1


def test_camels_multi_file_snapshot_is_refused(tmp_path, archive):
    """A chunk of a multi-file snapshot is not a CAMELS single file: refused, not silently used."""
    part = tmp_path / "x.hdf5"
    part.write_bytes(tng.snapshot_path(archive[RUNS["dark"]], SNAP, 0).read_bytes())
    with pytest.raises(tng.CorruptChunkError, match="NumFilesPerSnapshot=4"):
        camels.as_single_chunk(part, "snapshot")


def test_local_copy_is_checked_and_linked_not_copied(tmp_path, archive):
    src = archive[RUNS["hydro"]]
    base = tmp_path / "data" / "hydro" / "output"
    local.link_run(src, base, SNAP)
    linked = tng.snapshot_path(base, SNAP, 2)
    assert linked.is_symlink() and linked.resolve() == tng.snapshot_path(src, SNAP, 2).resolve()
    m = manifest.write_manifest(tmp_path / "data" / "hydro", SNAP, "local", checksums=False)
    assert len(m["snapshot_chunks"]) == 3 and m["num_part_total"][:5] == [3000, 4000, 0, 0, 500]


def test_local_catalogue_only_and_illustris_names(tmp_path, archive):
    """groups_099.N.hdf5 names (illustris_python's other layout) and no snapshot needed."""
    src = tmp_path / "copy"
    (src / f"groups_{SNAP:03d}").mkdir(parents=True)
    for i in range(2):
        os.symlink(tng.groupcat_path(archive[RUNS["dark"]], SNAP, i),
                   src / f"groups_{SNAP:03d}" / f"groups_{SNAP:03d}.{i}.hdf5")
    local.link_run(src, tmp_path / "d" / "output", SNAP, snapshot=False)
    m = manifest.write_manifest(tmp_path / "d", SNAP, "local", part_types=[])
    assert m["snapshot_chunks"] == [] and m["box_size"] == pytest.approx(20.0)


def test_local_incomplete_copy_is_refused(tmp_path, archive):
    src = tmp_path / "copy"
    for i in range(4):
        p = tng.snapshot_path(src, SNAP, i)
        p.parent.mkdir(parents=True, exist_ok=True)
        if i != 2:
            os.symlink(tng.snapshot_path(archive[RUNS["dark"]], SNAP, i), p)
    for i in range(2):
        p = tng.groupcat_path(src, SNAP, i)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(tng.groupcat_path(archive[RUNS["dark"]], SNAP, i), p)
    base = tmp_path / "d" / "output"
    with pytest.raises(tng.CorruptChunkError, match="snap_099.2.hdf5"):
        local.link_run(src, base, SNAP)
    assert not base.exists()


# --- what acquired a run -------------------------------------------------------------------


def test_acquired_run_is_checked_against_the_config(tmp_path):
    """Another archive run, base URL or source than the manifest records stops the workflow;
    the same settings, or a synthetic run regenerated by its rule, pass."""
    from dm2gal.acquire.identity import acquired_with, check_acquired
    from dm2gal.schema import ConfigError

    config = {"seed": 1, "evaluation": {"universes": [{"name": "h1", "seed_offset": 5}]},
              "acquire": {"source": "tng", "synthetic": {"seed_offset": 0},
                          "tng": {"base_url": "https://www.tng-project.org/api/", "dark": "TNG100-1-Dark"}}}
    (tmp_path / "dark").mkdir()
    manifest = {"source": "tng", "acquired_with": acquired_with(config, "dark")}
    (tmp_path / "dark" / "manifest.json").write_text(json.dumps(manifest))
    check_acquired(tmp_path, "results", "dark", acquired_with(config, "dark"))
    for key, value in (("dark", "TNG300-1-Dark"), ("base_url", "http://127.0.0.1:8000/api/")):
        other = json.loads(json.dumps(config))
        other["acquire"]["tng"][key] = value
        with pytest.raises(ConfigError, match=f"{tmp_path / 'dark'} holds a run acquired with source tng, "
                                              f"base_url https://www.tng-project.org/api/, run TNG100-1-Dark, "
                                              f"but the config asks for"):
            check_acquired(tmp_path, "results", "dark", acquired_with(other, "dark"))
    config["acquire"]["source"] = "synthetic"
    assert acquired_with(config, "universes/h1/dark") == {"source": "synthetic", "seed": 1, "seed_offset": 5}
    with pytest.raises(ConfigError, match="results_dir: results/synthetic"):
        check_acquired(tmp_path, "results", "dark", acquired_with(config, "dark"))
    (tmp_path / "dark" / "manifest.json").write_text(json.dumps({"source": "synthetic"}))  # before identities
    check_acquired(tmp_path, "results", "dark", acquired_with(config, "dark"))  # regenerated by its rule
    config["acquire"]["source"] = "camels"
    config["acquire"]["camels"] = {"base_url": "https://camels/", "dark": "IllustrisTNG_DM/L25n256/CV/CV_0"}
    with pytest.raises(ConfigError, match="holds a run acquired with source synthetic, but the config asks for "
                                          "source camels"):
        check_acquired(tmp_path, "results", "dark", acquired_with(config, "dark"))


# --- the Snakemake workflow against the emulator -----------------------------------------


def run_snakemake(repo, workdir, configfile, *targets, env=None):
    cmd = [str(Path(repo) / ".venv" / "bin" / "snakemake"), "--snakefile", str(repo / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(repo / "config.yaml"), str(configfile),
           "--cores", "4", *targets]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_snakemake_tng_source_against_emulator(tmp_path, archive, repo):
    """`source: tng` with base_url on the emulator: one job per chunk, faults survived, manifests pass,
    the grid stage builds dm_mass from the result, a second run fetches nothing, the key leaks nowhere."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = {
        "data_dir": "data/tng", "acquire": {"source": "tng", "tng": {
            "base_url": None, "hydro": RUNS["hydro"], "dark": RUNS["dark"], "max_connections": 2,
            "http": {"retries": 4, "backoff_s": 0.0, "max_backoff_s": 0.0}}},
        "grid": {"stellar_source": "particles", "n_grid": 32, "chunk": 32},
        # what the 8 Mpc/h test cube of this 20 Mpc/h box on 32^3 voxels resolves (k_Nyquist 5 h/Mpc),
        # checked when the workflow loads once the box size is known
        "stats": {"k_range": [1.0, 4.0], "bk": {"triangles": [[1.6, 2.4]]}},
        "evaluation": {"universes": []}}  # config.yaml's held-out universes are mini-universes
    env = dict(os.environ, TNG_API_KEY=KEY)
    with TNGEmulator(archive, SNAP, key=KEY) as emu:
        config["acquire"]["tng"]["base_url"] = emu.base_url
        (workdir / "tng.yaml").write_text(yaml.safe_dump(config))
        emu.fault(f"/api/{RUNS['dark']}/files/snapshot-{SNAP}.1.hdf5", "drop", "429")
        emu.fault(f"/api/{RUNS['hydro']}/files/groupcat-{SNAP}.2.hdf5", "corrupt")
        emu.fault(f"/api/{RUNS['hydro']}/files/snapshot-{SNAP}.0.hdf5", "redirect")
        emu.delay_s = 0.5  # downloads overlap: the tng_connections cap (max_connections 2) must hold
        # the manifests, and the grid stage's dark-matter field built from what was fetched
        targets = ["data/tng/dark/manifest.json", "data/tng/hydro/manifest.json",
                   "results/fields/dark/dm_mass.zarr"]
        result = run_snakemake(repo, workdir, workdir / "tng.yaml", *targets, env=env)
        assert result.returncode == 0, result.stderr[-4000:]
        n_requests = len(emu.requests)
        again = run_snakemake(repo, workdir, workdir / "tng.yaml", *targets, env=env)
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
        assert len(emu.requests) == n_requests  # a second run downloads nothing
        assert not emu.overflow
        assert emu.max_in_flight == 2
        assert [r.had_key for r in emu.requests if r.path.startswith("/data/")] == [False]
    # one job per chunk: dark 4 + 2, hydro 3 + 3
    assert (result.stdout + result.stderr).count("rule tng_snapshot_chunk:") == 7
    assert (result.stdout + result.stderr).count("rule tng_groupcat_chunk:") == 5
    dark = json.loads((workdir / "data/tng/dark/manifest.json").read_text())
    hydro = json.loads((workdir / "data/tng/hydro/manifest.json").read_text())
    assert len(dark["snapshot_chunks"]) == 4 and len(dark["groupcat_chunks"]) == 2
    assert dark["part_types"] == [1] and hydro["part_types"] == [4]
    assert hydro["num_part_total"][4] == 500 and dark["archive_run"] == RUNS["dark"]
    # what the grid stage reads: DM particles with masses from MassTable, the catalogues
    pos, mass = tng.read_particle_chunk(workdir / "data/tng/dark/output", SNAP, 0, 1)
    assert pos.shape == (1000, 3) and np.all(mass == 6e9)
    assert tng.load_subhalos(workdir / "data/tng/hydro/output", SNAP, ["SubhaloMassType"])["count"] == 150
    import zarr

    field = zarr.open_array(workdir / "results/fields/dark/dm_mass.zarr", mode="r")
    assert field.shape == (32, 32, 32)
    assert float(np.sum(field[:], dtype=np.float64)) == pytest.approx(4000 * 6e9, rel=1e-6)
    # the key appears in no file the run left behind (logs, .snakemake metadata, data)
    for path in workdir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), path
    assert not list(workdir.rglob("*.part"))


@pytest.mark.slow
@pytest.mark.parametrize("source", ["camels", "local"])
def test_snakemake_camels_and_local_sources(tmp_path, archive, camels_site, repo, source):
    """`source: camels` (public static files) and `source: local` (symlinks) end in passing manifests."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    if source == "camels":
        config = {"snapshot": CAMELS_SNAP, "acquire": {"source": "camels", "camels": {
            "base_url": camels_site, **CAMELS_RUNS, "http": {"backoff_s": 0.0}}}}
        snap = CAMELS_SNAP
    else:
        config = {"acquire": {"source": "local", "local": {
            sim: str(archive[run]) for sim, run in RUNS.items()}}}
        snap = SNAP
    config["data_dir"] = "data/run"
    config["evaluation"] = {"universes": []}  # config.yaml's held-out universes are mini-universes
    (workdir / "run.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(repo, workdir, workdir / "run.yaml", "data/run/dark/manifest.json",
                           "data/run/hydro/manifest.json")
    assert result.returncode == 0, result.stderr[-4000:]
    hydro = json.loads((workdir / "data/run/hydro/manifest.json").read_text())
    dark = json.loads((workdir / "data/run/dark/manifest.json").read_text())
    assert hydro["part_types"] == [] and hydro["snapshot_chunks"] == []  # stellar mass from subhalos
    assert dark["num_part_total"][1] == 4000 and dark["source"] == source
    base = workdir / "data/run/dark/output"
    if source == "local":
        assert all(p.is_symlink() for p in base.rglob("*.hdf5"))
        assert len(dark["snapshot_chunks"]) == 4 and "sha256" not in dark["snapshot_chunks"][0]
    pos, mass = tng.read_particle_chunk(base, snap, 0, 1)
    assert np.all(mass == 6e9) and pos.max() <= 20.0


@pytest.mark.slow
def test_switching_source_never_reuses_another_sources_data(tmp_path, archive):
    """synthetic -> tng -> synthetic, as a user edits config.yaml: tng in the synthetic data_dir
    stops before any job saying what to do; in a data_dir of its own (even with the same
    results_dir) it acquires from the archive and the fields are built from it; back to
    synthetic, the fields are the mini-universe's again. A new seed regenerates the
    mini-universe in place."""
    from dm2gal.fields import open_field
    from snakemake_run import dry_run_jobs, prepare_workdir, snakemake

    target = "results/fields/dark/dm_mass.zarr"
    env = dict(os.environ, TNG_API_KEY=KEY)
    work = prepare_workdir(tmp_path / "work", evaluation={"universes": []})
    synthetic = yaml.safe_load((work / "config.yaml").read_text())

    def run(**config):
        """Build the field after editing the config; the manifests are targets, as in `all`."""
        cfg = yaml.safe_load(prepare_workdir(work, work / "config.yaml", **config).joinpath("config.yaml").read_text())
        manifests = [f"{cfg['data_dir']}/{sim}/manifest.json" for sim in ("dark", "hydro")]
        proc = snakemake(work, "--cores", "2", *manifests, target, env=env)
        field = open_field(work / target)
        return dict(field.attrs)["box_size"], float(np.sum(field[...], dtype=np.float64)), proc.stdout + proc.stderr

    box, mass, _ = run()
    assert box == synthetic["acquire"]["synthetic"]["box_size"]
    with TNGEmulator(archive, SNAP, key=KEY) as emu:
        url = emu.base_url
        tng_source = {"source": "tng", "tng": {"base_url": url, **RUNS, "http": {"backoff_s": 0.0}}}
        prepare_workdir(work, work / "config.yaml", acquire=tng_source)
        refused = snakemake(work, "--dry-run", target, env=env, check=False)
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert (f"data/tiny/dark holds a run acquired with source synthetic, seed 1234, seed_offset 0, but the "
                f"config asks for source tng, base_url {url}, run {RUNS['dark']}") in out
        assert ("Give this data directories of its own: data_dir (now data/tiny) and results_dir (now results), "
                "e.g. data_dir: data/tng, results_dir: results/tng") in out
        assert "rule " not in out  # no job planned, none run
        tng_box, tng_mass, _ = run(data_dir="data/tng")
    assert tng_box == COSMO["BoxSize"] and tng_mass == pytest.approx(4000 * 6e9, rel=1e-6)
    recorded = json.loads((work / "data/tng/dark/manifest.json").read_text())["acquired_with"]
    assert recorded == {"source": "tng", "base_url": url, "run": RUNS["dark"]}
    # back to the mini-universe: its data, untouched, and fields built from it again
    back_box, back_mass, log = run(data_dir=synthetic["data_dir"], acquire=synthetic["acquire"])
    assert (back_box, back_mass) == (box, mass) and "rule grid_box:" in log
    prepare_workdir(work, work / "config.yaml", seed=synthetic["seed"] + 1)
    assert {"synthesize", "acquired"} <= set(dry_run_jobs(work, target, env=env))
