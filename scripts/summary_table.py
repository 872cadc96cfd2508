"""Rules table_*: one summary file (cubes.json, occupancy.json, summary.tsv) as an HTML table (dm2gal.tables)."""
from dm2gal.logs import log_to_file
from dm2gal.tables import write_summary_table

log = log_to_file(snakemake.log[0])
write_summary_table(snakemake.params.table, snakemake.input[0], snakemake.output[0])
log.info("wrote %s", snakemake.output[0])
