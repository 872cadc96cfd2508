"""Rule paint: honest painting of the test cube or of an extra gravity-only run in one job (dm2gal.paint)."""

from dm2gal.logs import log_to_file
from dm2gal.model import configured_patch
from dm2gal.paint import Job, Settings, run

log_to_file(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
job = Job(i.model, i.dm_mass, i.subhalo_mass, i.reference_dm, i.cubes, p.source, whole_box=p.whole_box,
          occupancy_json=i.get("occupancy"), expected_patch=configured_patch(p.model), subhalos=(p.base, p.snapshot),
          galaxy_calibration=p.galaxy_calibration, deposit=p.deposit)
run(job, o.field, out_scatter=o.scatter, out_catalogue=o.catalogue,
    settings=Settings.from_config(snakemake.config["paint"], p.method), threads=snakemake.threads)
