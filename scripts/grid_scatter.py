"""Bucket one input chunk by x-slab (rule grid_scatter)."""
from dm2gal.grid import FieldSource, SlabPlan, scatter
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
counts = scatter(FieldSource(**snakemake.params.source), int(snakemake.wildcards.chunk),
                 SlabPlan(**snakemake.params.plan), snakemake.output[0])
log.info("chunk %s: %d particles per slab (margins included): %s",
         snakemake.wildcards.chunk, counts.sum(), counts.tolist())
