# Held-out universes (evaluation.universes; docs/evaluation.md): paired runs that
# training never sees, each painted whole from its gravity-only run by the selected
# model (honest occupancy, the threshold calibrated on the training universe) and by
# the training HOD (rules/hod.smk), and measured over the whole box against its hydro
# twin (rules/stats.smk). For the synthetic source each universe is a mini-universe
# generated here like the training one with its own seed_offset, under
# {data_dir}/universes/{name}/{dark,hydro}, then verified by the checkpoint
# `acquired`; archive universes are read where the entry says. Their runs are gridded
# by the grid rules as universes/{name}/{dark,hydro}.

if SYNTHETIC:

    use rule synthesize as synthesize_universe with:
        output:
            dark=directory(sim_base(universe_run("{universe}", "dark"))),
            hydro=directory(sim_base(universe_run("{universe}", "hydro"))),
        wildcard_constraints:
            universe="|".join(ALL_UNIVERSES),
        params:
            synthetic=lambda w: synthetic_params(config["acquire"]["synthetic"],
                                                 ALL_UNIVERSES[w.universe]["seed_offset"]),
        log:
            logs("synthesize_universe", "{universe}"),
        benchmark:
            results("benchmarks", "synthesize_universe", "{universe}.tsv")
        priority: 0


    rule ideal_realisations:
        """The upper reference of the drawn painters: the generator's own log-normal (dm2gal.ideal)."""
        input:
            ideal=lambda w: universe_field(w.universe, "hydro", "stellar_mass_ideal"),
            hydro=lambda w: manifest("hydro") if w.universe == "test" else acquired_input(w.universe, "hydro"),
        output:
            [directory(path) for path in ideal_realisation_fields("{universe}")],
        wildcard_constraints:
            universe="|".join(["test", *EVAL_UNIVERSES]),
        params:
            base=lambda w: universe_base(w.universe, "hydro"),
            snapshot=lambda w: universe_snapshot(w.universe),
            scatter=config["acquire"]["synthetic"]["galaxies"]["scatter"],
            seed=lambda w: stage_seed("ideal_realisations", w.universe),
        log:
            logs("ideal_realisations", "{universe}"),
        benchmark:
            results("benchmarks", "ideal_realisations", "{universe}.tsv")
        threads: 1
        conda:
            "../envs/sim.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../scripts/ideal_realisations.py"


use rule paint as paint_universe with:
    input:
        dm_mass=universe_field("{universe}", "dark", "dm_mass"),
        subhalo_mass=universe_field("{universe}", "dark", "subhalo_mass"),
        model=results("select", "best.ckpt"),
        reference_dm=results("fields", "dark", "dm_mass.zarr"),
        **occupancy_input(),
        cubes=results("split", "cubes.json"),  # the split's min_stellar_mass
    output:
        field=directory(painted_field("{universe}")),
        scatter=directory(painted_field("{universe}", "stellar_mass_scatter")),
        catalogue=results("paint", "universes", "{universe}", "catalogue.hdf5"),
    wildcard_constraints:
        universe="|".join(EVAL_UNIVERSES),
    params:
        base=lambda w: universe_base(w.universe, "dark"),
        snapshot=lambda w: universe_snapshot(w.universe),
        source=lambda w: universe_run(w.universe, "dark"),
        whole_box=True,
    log:
        logs("paint_universe", "{universe}"),
    benchmark:
        results("benchmarks", "paint_universe", "{universe}.tsv")


FINAL_TARGETS.extend(universe_field(u, sim, q) for u in EVAL_UNIVERSES
                     for sim, q in [("dark", "dm_mass"), ("dark", "subhalo_mass"), ("hydro", "stellar_mass"),
                                    *([("hydro", "stellar_mass_ideal")] if SYNTHETIC else [])])
FINAL_TARGETS.extend(path for u in EVAL_UNIVERSES
                     for path in (painted_field(u), *hod_fields(u), *dm2gal_realisation_fields(u),
                                  results("hod", u, "bins.json")))
