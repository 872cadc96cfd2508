# The hod stage (see docs/pipeline.md and docs/painting.md): the paper's HOD
# benchmark, fitted on the training pair and any split.training_universes (hydro
# halos, their satellite corrections against the gravity-only run, the
# abundance-matching relation) and drawn
# hod.realisations times onto a gravity-only run's subhalos: the training run over
# the test cube (universe "test"), or a held-out universe's run whole
# (evaluation.universes). Each realisation is deposited like that universe's truth.
# Its input functions are in rules/common.smk.

rule hod:
    input:
        unpack(hod_inputs),
    output:
        fields=[directory(path) for path in hod_fields("{universe}")],
        catalogue=results("hod", "{universe}", "catalogue.hdf5"),
        bins=results("hod", "{universe}", "bins.json"),
    wildcard_constraints:
        universe="|".join(["test", *EVAL_UNIVERSES]),
    params:
        dark_base=sim_base("dark"),
        hydro_base=sim_base("hydro"),
        snapshot=SNAPSHOT,
        target_base=lambda w: sim_base("dark") if w.universe == "test" else universe_base(w.universe, "dark"),
        target_snapshot=lambda w: SNAPSHOT if w.universe == "test" else universe_snapshot(w.universe),
        source=lambda w: "dark" if w.universe == "test" else universe_run(w.universe, "dark"),
        n_bins=HOD["n_bins"],
        mass_min=HOD["mass_min"],
        mass_max=HOD["mass_max"],
        halo_mass_field=HOD["halo_mass_field"],
        match_masses=HOD["match_halo_masses"],
        extra_bases=[[universe_base(u, "dark"), universe_base(u, "hydro"), universe_snapshot(u)]
                     for u in TRAINING_UNIVERSES],
        seed=HOD["seed"] if HOD["seed"] is not None else stage_seed("hod"),
    log:
        logs("hod", "{universe}"),
    benchmark:
        results("benchmarks", "hod", "{universe}.tsv")
    threads: 1
    conda:
        "../envs/sim.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/hod.py"


FINAL_TARGETS.extend([*hod_fields("test"), results("hod", "test", "catalogue.hdf5"), results("hod", "test", "bins.json")])
