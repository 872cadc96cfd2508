"""Scores, uncertainties and verdicts: {results}/metrics.json and {results}/verdicts.html."""
import json
from pathlib import Path

from dm2gal.logs import log_to_file
from dm2gal.metrics import compute_metrics, write_metrics, write_verdict_table
from dm2gal.stats import load_stats

log = log_to_file(snakemake.log[0])
stats_by_universe = {}
for (universe, model), path in zip(snakemake.params.layout, snakemake.input.stats):
    stats_by_universe.setdefault(universe, {})[model] = load_stats(path)
occupancy_json = snakemake.input.get("occupancy")  # the voxel painter's only
occupancy = json.loads(Path(occupancy_json).read_text()) if occupancy_json else None
metrics = compute_metrics(stats_by_universe, snakemake.params.cfg, occupancy)
write_metrics(snakemake.output.metrics, metrics)
write_verdict_table(snakemake.output.verdicts, metrics)
log.info("verdicts: %s", json.dumps(metrics["verdicts"]))
