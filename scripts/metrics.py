"""One number per model and statistic: {results}/metrics.json."""
import json
from pathlib import Path

from dm2gal.logs import log_to_file
from dm2gal.metrics import compute_metrics, write_metrics
from dm2gal.stats import load_stats, split_realisations

log = log_to_file(snakemake.log[0])
# Interim (issue 12, until the scores rewrite): the HOD's first realisation, as before the ensemble.
all_stats = {m: split_realisations(load_stats(p))[0] for m, p in zip(snakemake.params.models, snakemake.input.stats)}
occupancy = json.loads(Path(snakemake.input.occupancy).read_text())
metrics = compute_metrics(all_stats, snakemake.params.stats_cfg, occupancy)
write_metrics(snakemake.output[0], metrics)
log.info("metrics: %s", json.dumps(metrics))
