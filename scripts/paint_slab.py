"""Rule paint_slab: one x-slab of a whole gravity-only run (dm2gal.paint.paint_slab)."""

from dm2gal.logs import log_to_file
from dm2gal.model import configured_patch
from dm2gal.paint import Job, Settings, paint_slab
from dm2gal.paint_plan import SlabPlan

log_to_file(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
job = Job(i.model, i.dm_mass, i.subhalo_mass, i.reference_dm, i.cubes, p.source, whole_box=True,
          occupancy_json=i.get("occupancy"), expected_patch=configured_patch(p.model))
paint_slab(job, SlabPlan(**p.plan), int(snakemake.wildcards.slab), o.field, o.scatter,
           settings=Settings.from_config(snakemake.config["paint"], p.method), threads=snakemake.threads)
