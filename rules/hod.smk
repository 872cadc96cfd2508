# The hod stage (see docs/pipeline.md and docs/painting.md): the paper's HOD
# benchmark, fitted on the hydro run's halos and sampled onto the gravity-only run's
# subhalos, deposited on the test cube's grid like the truth.

HOD = config["hod"]


rule hod:
    input:
        dark=manifest("dark"),
        hydro=manifest("hydro"),
        truth=results("fields", "hydro", "stellar_mass.zarr"),
        cubes=results("split", "cubes.json"),
    output:
        field=directory(results("hod", "stellar_mass.zarr")),
        catalogue=results("hod", "catalogue.hdf5"),
        bins=results("hod", "bins.json"),
    params:
        dark_base=sim_base("dark"),
        hydro_base=sim_base("hydro"),
        snapshot=SNAPSHOT,
        n_bins=HOD["n_bins"],
        mass_min=HOD["mass_min"],
        mass_max=HOD["mass_max"],
        halo_mass_field=HOD["halo_mass_field"],
        match_masses=HOD["match_halo_masses"],
        seed=HOD["seed"] if HOD["seed"] is not None else config["seed"],
    log:
        logs("hod"),
    benchmark:
        results("benchmarks", "hod", "hod.tsv")
    threads: 1
    conda:
        "../envs/sim.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/hod.py"


FINAL_TARGETS.extend([rules.hod.output.field, rules.hod.output.catalogue, rules.hod.output.bins])
