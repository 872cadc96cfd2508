"""Rule paint_oracle: the paper's "oracle positions" painting of the test cube (a labelled diagnostic)."""

from dm2gal.logs import log_to_file
from dm2gal.paint import configured_patch, painting_settings, run

log_to_file(snakemake.log[0])
i, p, s = snakemake.input, snakemake.params, painting_settings(snakemake.config["paint"])
run(i.model, i.dm_mass, i.subhalo_mass, i.dm_mass, p.base, p.snapshot, snakemake.output.field, None,
    source="dark", mode="oracle", cubes_json=i.cubes, truth_path=i.truth, expected_patch=configured_patch(p.model),
    method=p.method, **s, threads=snakemake.threads, galaxy_calibration=p.galaxy_calibration)
