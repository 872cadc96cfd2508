"""Check a run's copy on disk and symlink it into data_dir in TNG layout (nothing copied)."""
from dm2gal.acquire import local
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
local.link_run(p.src, snakemake.output[0], p.snapshot, snapshot=p.particles)
