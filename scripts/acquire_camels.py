"""Download one CAMELS single file (public) into its one-chunk TNG-layout path."""
from dm2gal.acquire import camels, http
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
cfg = snakemake.config["acquire"]["camels"]
camels.fetch(camels.file_url(cfg["base_url"], p.run_path, p.kind, p.snapshot), p.base, p.snapshot, p.kind,
             policy=http.Policy(**cfg["http"]))
