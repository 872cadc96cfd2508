"""Rule training_curves: loss, learning rate and selection statistic of every sweep point (dm2gal.figures)."""
from pathlib import Path

from dm2gal.figures import make_training_curves
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
paths = make_training_curves(list(snakemake.input.histories), snakemake.input.summary,
                             Path(snakemake.output.png).with_suffix(""), snakemake.params.dpi)
log.info("wrote %s", ", ".join(paths))
