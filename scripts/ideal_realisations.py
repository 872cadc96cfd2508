"""Rule ideal_realisations: the mini-universe's galaxies redrawn from its generator (dm2gal.ideal)."""

from dm2gal.ideal import write_ideal_realisations
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
write_ideal_realisations(list(snakemake.output), snakemake.input.ideal, p.base, p.snapshot, p.scatter, p.seed)
