"""Rule paint_occupancy: calibrate where galaxies go from the gravity-only run (dm2gal.occupancy)."""

from dm2gal.logs import log_to_file
from dm2gal.occupancy import run

log_to_file(snakemake.log[0])
run(snakemake.input.stellar, snakemake.input.subhalo, snakemake.input.cubes, snakemake.output[0],
    snakemake.params.criterion)
