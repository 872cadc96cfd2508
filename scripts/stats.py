"""Summary statistics of one model's test cube: {results}/stats/{model}.npz."""
from dm2gal import stats
from dm2gal.logs import log_to_file

log = log_to_file(snakemake.log[0])
model = snakemake.wildcards.model
out = stats.model_statistics(model, snakemake.input.hydro, snakemake.input.cubes, snakemake.params.cfg,
                             field=snakemake.input.get("field"), threads=snakemake.threads)
stats.save_stats(snakemake.output[0], out)
log.info("%s: %d P(k) bins, %d triangles x %d angles, %d voxels in the PDF bins",
         model, len(out["k"]), len(out["triangles"]), len(out["theta"]), out["pdf_counts"].sum())
