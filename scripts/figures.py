"""The paper's Figure 1 and one figure per statistic: {results}/figures/*.png|pdf."""
from pathlib import Path

from dm2gal.figures import make_figures
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
stats_paths = {}
for (universe, model), path in zip(snakemake.params.layout, snakemake.input.stats):
    stats_paths.setdefault(universe, {})[model] = path
fields = {key: snakemake.input[key] for key in ("hydro", "dm2gal", "hod", "dm", "subhalos")}
paths = make_figures(stats_paths, fields, snakemake.input.cubes, Path(snakemake.output.figure1_png).parent,
                     snakemake.params.stats_cfg, snakemake.params.fig_cfg)
log.info("wrote %s", ", ".join(paths))
