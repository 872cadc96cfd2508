"""Summary statistics of one model on one universe: {results}/stats/{universe}/{model}.npz."""
from dm2gal import stats
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
i, model = snakemake.input, snakemake.wildcards.model
field = list(i.realisations) if "realisations" in i.keys() else i.get("field")
out = stats.model_statistics(model, i.hydro, i.get("cubes"), snakemake.params.cfg, field=field,
                             threads=snakemake.threads)
stats.save_stats(snakemake.output[0], out)
log.info("%s/%s: %d P(k) bins, %d triangles x %d angles, %s realisation(s)", snakemake.wildcards.universe,
         model, len(out["k"]), len(out["triangles"]), len(out["theta"]), out.get("realisations", 1))
