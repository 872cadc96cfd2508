"""Rule paint_realisations: stellar-mass fields drawn from the painted distribution (dm2gal.realisations)."""

from dm2gal.logs import log_to_file
from dm2gal.realisations import write_realisations

log_to_file(snakemake.log[0])
i, p = snakemake.input, snakemake.params
write_realisations(list(snakemake.output), i.field, i.scatter, p.base, p.snapshot, p.seed, i.catalogue)
