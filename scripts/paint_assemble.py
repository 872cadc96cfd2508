"""Rule paint_assemble: the slabs of a whole gravity-only run linked into its painted fields, and its catalogue."""

from dm2gal.logs import log_to_file
from dm2gal.model import configured_patch
from dm2gal.paint import Job, assemble
from dm2gal.paint_plan import SlabPlan

log_to_file(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
job = Job(i.model, i.dm_mass, i.subhalo_mass, i.reference_dm, i.cubes, p.source, whole_box=True,
          occupancy_json=i.get("occupancy"), expected_patch=configured_patch(p.model), subhalos=(p.base, p.snapshot),
          galaxy_calibration=p.galaxy_calibration, deposit=p.deposit)
assemble(job, SlabPlan(**p.plan), i.slabs, i.scatters, o.field, o.scatter, o.catalogue)
