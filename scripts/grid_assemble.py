"""Link the slab stores into the field, which appears atomically (rule grid_assemble)."""
from dm2gal.grid import FieldSource, SlabPlan, assemble
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
attrs = assemble(snakemake.input, FieldSource(**snakemake.params.source), SlabPlan(**snakemake.params.plan),
                 snakemake.output[0])
log.info("wrote %s: %s", snakemake.output[0], attrs)
