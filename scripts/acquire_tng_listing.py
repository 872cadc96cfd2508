"""Fetch one TNG run's file listing (chunk URLs and archive checksums). Key: $TNG_API_KEY."""
from dm2gal.acquire import http, tng_api
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
fallback = {kind: p.fallback_chunks for kind in p.kinds} if p.fallback_chunks else None
cfg = snakemake.config["acquire"]["tng"]
tng_api.fetch_listing(snakemake.output[0], cfg["base_url"], p.run, p.snapshot, kinds=tuple(p.kinds),
                      chunks=fallback, policy=http.Policy(**cfg["http"]))
