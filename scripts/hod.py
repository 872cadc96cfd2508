"""Rule hod: the paper's HOD benchmark, hod.realisations draws on one universe (dm2gal.hod)."""

from dm2gal.hod import run_stage
from dm2gal.logs import log_to_file

log_to_file(snakemake.log[0])
p = snakemake.params
run_stage(p.dark_base, p.hydro_base, p.snapshot, snakemake.input.truth, snakemake.input.get("cubes"),
          list(snakemake.output.fields), snakemake.output.catalogue, snakemake.output.bins,
          universe=snakemake.wildcards.universe, target_base=p.target_base, target_snapshot=p.target_snapshot,
          source=p.source, n_bins=p.n_bins, mass_min=p.mass_min, mass_max=p.mass_max,
          halo_mass_field=p.halo_mass_field, seed=p.seed, match_masses=p.match_masses,
          extra_bases=[tuple(b) for b in p.extra_bases])
