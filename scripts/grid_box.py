"""Deposit one whole-box field with MAS_library.MA (rule grid_box)."""
from dm2gal.grid import FieldSource, build_box
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
attrs = build_box(FieldSource(**snakemake.params.source), snakemake.params.n_grid, snakemake.output[0],
                  chunk=snakemake.params.chunk)
log.info("wrote %s: %s", snakemake.output[0], attrs)
