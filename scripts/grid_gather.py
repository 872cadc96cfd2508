"""Deposit one x-slab from every scatter bucket and write its Zarr chunks (rule grid_gather)."""
from dm2gal.grid import SlabPlan, gather
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
attrs = gather(snakemake.input, int(snakemake.wildcards.slab), SlabPlan(**snakemake.params.plan), snakemake.output[0])
log.info("slab %s: %s", snakemake.wildcards.slab, attrs)
