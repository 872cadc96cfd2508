"""How long a resumed download of a 200 MB chunk takes after a drop at 50%, on loopback.

Serves a TNG-layout snapshot chunk of about 200 MB (float64 dark-matter coordinates)
from the test emulator of the TNG web API (tests/tng_emulator.py) on 127.0.0.1 and
times dm2gal.acquire.tng_api.fetch_chunk: once uninterrupted, once with the
connection dropped after half the file (the client resumes with a Range request),
each including the HDF5 check. Prints bytes sent by the server in each case.

    .venv/bin/python benchmarks/resume_download.py [--mb 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dm2gal import tng  # noqa: E402
from dm2gal.acquire import http, tng_api  # noqa: E402
from tng_emulator import TNGEmulator  # noqa: E402

SNAP, RUN, KEY = 99, "Bench-Dark", "bench-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="chunk size [MB]")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["TNG_API_KEY"] = KEY
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = int(args.mb * 1e6 / 24)  # float64 x 3 per particle
        pos = np.random.default_rng(0).uniform(0, 100, (n, 3))
        header = dict(BoxSize=100.0, Omega0=0.3, OmegaLambda=0.7, HubbleParam=0.7, Redshift=0.0, Time=1.0,
                      MassTable=np.array([0, 1e9, 0, 0, 0, 0]))
        tng.write_snapshot(tmp / "archive", SNAP, header, {1: {"Coordinates": pos}}, n_chunks=1)
        del pos
        policy = http.Policy(retries=3, backoff_s=0.0, max_backoff_s=0.0)
        with TNGEmulator({RUN: tmp / "archive"}, SNAP, key=KEY) as emu:
            tng_api.fetch_listing(tmp / "listing.json", emu.base_url, RUN, SNAP, kinds=("snapshot",),
                                  policy=policy)
            path = f"/api/{RUN}/files/snapshot-{SNAP}.0.hdf5"
            size = len(emu._body(RUN, "snapshot", 0, {"dm": ["Coordinates"]}))
            for label, faults in (("uninterrupted", ()), ("drop at 50%, resumed", ("drop",))):
                times = []
                for _ in range(args.repeat):
                    dest = tmp / "out" / f"snap_{SNAP:03d}.0.hdf5"
                    dest.unlink(missing_ok=True)
                    emu.fault(path, *faults)
                    before = len(emu.requests)
                    t0 = time.perf_counter()
                    tng_api.fetch_chunk(tmp / "listing.json", "snapshot", 0, dest,
                                        fields={"dm": ["Coordinates"]}, policy=policy)
                    times.append(time.perf_counter() - t0)
                    requests = emu.requests[before:]
                assert dest.stat().st_size == size
                print(f"{label:>22}: {size / 1e6:.1f} MB, {len(requests)} request(s) "
                      f"(ranges: {[r.range for r in requests]}), "
                      f"median {np.median(times):.2f} s, min {min(times):.2f} s over {args.repeat}")


if __name__ == "__main__":
    main()
