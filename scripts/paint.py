"""Rule paint: honest painting of the test cube or of an extra gravity-only run (dm2gal.paint)."""

from dm2gal.logs import log_to_file
from dm2gal.paint import configured_patch, painting_settings, run

log_to_file(snakemake.log[0])
i, p, s = snakemake.input, snakemake.params, painting_settings(snakemake.config["paint"])
run(i.model, i.dm_mass, i.subhalo_mass, i.reference_dm, p.base, p.snapshot, snakemake.output.field,
    snakemake.output.catalogue, source=p.source, mode="honest", cubes_json=i.cubes, whole_box=p.whole_box,
    occupancy_json=i.occupancy, expected_patch=configured_patch(p.model), method=p.method, **s, threads=snakemake.threads,
    out_scatter=snakemake.output.scatter, galaxy_calibration=p.galaxy_calibration)
