# Synthetic source (the mini-universe): fills ACQUIRE_INPUTS['synthetic'].
# One job makes both runs of the pair from the same initial conditions
# (docs/mini-universe.md); the checkpoint `acquired` then verifies and records them.
# Defined only for this source, so the run directories have exactly one producer.


if ACQUIRE_SOURCE == "synthetic":

    rule synthesize:
        output:
            dark=directory(sim_base("dark")),
            hydro=directory(sim_base("hydro")),
        params:
            synthetic=config["acquire"]["synthetic"],
            seed=config["seed"],  # as given: the mini-universe derives its own from [seed, seed_offset] (dm2gal.seeds)
            snapshot=SNAPSHOT,
        log:
            logs("synthesize"),
        benchmark:
            results("benchmarks", "synthesize.tsv")
        # mostly serial (its FFTs are a small part): one core, so that two universes synthesise
        # side by side; the training universe first, since training waits for it
        threads: 1
        priority: 2
        conda:
            "../envs/sim.yaml"
        resources:
            mem_mb=4000,
            runtime=30,
        script:
            "../scripts/synthesize.py"

    ACQUIRE_INPUTS["synthetic"] = lambda wildcards: sim_base(wildcards.sim)
