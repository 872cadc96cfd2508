"""Generate the mini-universe (gravity-only + hydro twin) in TNG layout."""
from dm2gal.acquire.synthetic.build import synthesize
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
summary = synthesize(snakemake.params.synthetic, snakemake.params.seed, snakemake.output.dark,
                     snakemake.output.hydro, snapshot=snakemake.params.snapshot,
                     workers=snakemake.threads)
log.info("mini-universe: %s", summary)
