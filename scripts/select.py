"""Rule select: the sweep point of best validation power spectrum (dm2gal.select.select)."""
from dm2gal.logs import log_to_file
from dm2gal.select import select

log_to_file(snakemake.log[0])
points = dict(zip(snakemake.params.points, zip(snakemake.input.ckpts, snakemake.input.histories)))
select(points, snakemake.output.ckpt, snakemake.output.summary)
