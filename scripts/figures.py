"""The paper's Figure 1 and one figure per statistic: {results}/figures/*.png|pdf."""
import tempfile
from pathlib import Path

from dm2gal.figures import make_figures
from dm2gal.logs import log_to_file
from dm2gal.stats import load_stats, save_stats, split_realisations

log = log_to_file(snakemake.log[0])
stats_paths = dict(zip(snakemake.params.models, snakemake.input.stats))
fields = {key: snakemake.input[key] for key in ("hydro", "dm2gal", "hod", "dm", "subhalos")}
with tempfile.TemporaryDirectory() as tmp:
    # Interim (issue 12, until the scores rewrite): the HOD's first realisation, as before the ensemble.
    for model, path in stats_paths.items():
        if "realisations" in (s := load_stats(path)):
            stats_paths[model] = f"{tmp}/{model}.npz"
            save_stats(stats_paths[model], split_realisations(s)[0])
    paths = make_figures(stats_paths, fields, snakemake.input.cubes, Path(snakemake.output.figure1_png).parent,
                         snakemake.params.stats_cfg, snakemake.params.fig_cfg)
log.info("wrote %s", ", ".join(paths))
