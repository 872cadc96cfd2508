"""Rule paint_oracle: the paper's "oracle positions" painting of the test cube (a labelled diagnostic)."""

from dm2gal.logs import log_to_file
from dm2gal.model import configured_patch
from dm2gal.paint import Job, Settings, run

log_to_file(snakemake.log[0])
i, p = snakemake.input, snakemake.params
job = Job(i.model, i.dm_mass, i.subhalo_mass, i.dm_mass, i.cubes, "dark", mode="oracle", truth_path=i.truth,
          expected_patch=configured_patch(p.model), subhalos=(p.base, p.snapshot),
          galaxy_calibration=p.galaxy_calibration, deposit=p.deposit)
run(job, snakemake.output.field, settings=Settings.from_config(snakemake.config["paint"], p.method),
    threads=snakemake.threads)
