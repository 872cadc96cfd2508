"""Download one TNG chunk (resumable, verified) to its TNG-layout path. Key: $TNG_API_KEY."""
from dm2gal.acquire import http, tng_api
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
tng_api.fetch_chunk(snakemake.input[0], p.kind, int(snakemake.wildcards.chunk), snakemake.output[0],
                    fields=p.fields, policy=http.Policy(**snakemake.config["acquire"]["tng"]["http"]))
