"""Generation time and peak memory of the default mini-universe (config.yaml's acquire.synthetic).

    .venv/bin/python benchmarks/mini_universe.py [--out DIR] [--workers N]

Prints wall and CPU time per stage (initial conditions + particle-mesh, catalogues
+ hydro twin, writing), the peak resident memory of the process, and the counts.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import yaml
from snakemake.utils import validate

from dm2gal.acquire.synthetic import build

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="where to write the runs (default: a temporary directory)")
    parser.add_argument("--workers", type=int, default=2, help="FFT threads")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    params = config["acquire"]["synthetic"]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        wall, cpu = time.perf_counter(), time.process_time()
        runs = build.make(params, config["seed"], workers=args.workers, progress=False)
        made = time.perf_counter() - wall, time.process_time() - cpu
        for sim in ("dark", "hydro"):
            build.write(runs[sim], out / sim / "output", config["snapshot"], params["n_chunks"])
        total = time.perf_counter() - wall, time.process_time() - cpu
        size = sum(p.stat().st_size for p in out.rglob("*.hdf5"))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB -> GiB
    mstar = runs["hydro"]["subhalos"]["SubhaloMassType"][:, 4]
    print(f"default mini-universe: {params['box_size']} Mpc/h, {params['n_particles']}^3 particles, "
          f"{params['pm_steps']} PM steps on a {params['pm_mesh_factor'] * params['n_particles']}^3 mesh")
    print(f"generate (ICs, PM, FoF, subhalos, hydro twin): wall {made[0]:.1f} s, cpu {made[1]:.1f} s")
    print(f"total incl. writing {size / 1024**2:.0f} MiB of HDF5: wall {total[0]:.1f} s, cpu {total[1]:.1f} s")
    print(f"peak resident memory: {peak:.2f} GiB")
    print(f"FoF groups {len(runs['dark']['halos']['GroupMass'])}, dark subhalos "
          f"{len(runs['dark']['subhalos']['SubhaloMass'])}, hydro subhalos {len(mstar)}, "
          f"M* > 1e8 Msun/h: {(mstar > 1e8).sum()}, > 1e9: {(mstar > 1e9).sum()}, > 1e10: {(mstar > 1e10).sum()}, "
          f"star particles {len(runs['hydro']['particles'][4]['Masses'])}")


if __name__ == "__main__":
    main()
