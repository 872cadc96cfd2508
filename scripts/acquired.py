"""Verify every chunk of one acquired run and write its manifest."""
from dm2gal.acquire.identity import acquired_with
from dm2gal.acquire.manifest import write_manifest
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
# What acquired the run is read from config, not params: recording it must not make
# Snakemake verify again every run acquired before it was recorded.
m = write_manifest(snakemake.params.sim_dir, snakemake.params.snapshot, snakemake.params.source,
                   acquired_with=acquired_with(snakemake.config, snakemake.wildcards.sim),
                   **snakemake.params.options)
log.info("%s: %d snapshot chunks, %d group-catalogue chunks, box %.3f Mpc/h",
         snakemake.params.sim_dir, len(m["snapshot_chunks"]), len(m["groupcat_chunks"]), m["box_size"])
