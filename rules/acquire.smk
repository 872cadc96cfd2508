# The acquire stage: put the {dark, hydro} run pair on disk in TNG layout (and, for the
# synthetic source, the held-out universes' pairs: rules/evaluate.smk makes them, the
# checkpoint here verifies them as universes/{name}/{dark,hydro}).
# Each source's rules fill ACQUIRE_INPUTS[source] with a function of the `sim`
# wildcard that returns the files that source lays out for that run; the
# checkpoint below then verifies every chunk and writes the manifest that later
# stages depend on (a checkpoint, so that per-chunk jobs downstream can read the
# chunk count from it).

ACQUIRE_INPUTS = {}
# Optional, per source: a function of the wildcards returning extra keyword
# arguments of dm2gal.acquire.manifest.write_manifest (part_types, checksums, and
# key-values recorded in the manifest such as the archive's run name).
ACQUIRE_MANIFEST_OPTIONS = {}


include: "acquire_synthetic.smk"
include: "acquire_archives.smk"


checkpoint acquired:
    input:
        lambda wildcards: ACQUIRE_INPUTS[ACQUIRE_SOURCE](wildcards),
    output:
        manifest("{sim}"),
    wildcard_constraints:
        sim="|".join(ACQUIRED_RUNS),  # the pair, and the generated held-out universes (rules/evaluate.smk)
    params:
        sim_dir=lambda wildcards: str(DATA_DIR / wildcards.sim),
        snapshot=SNAPSHOT,
        source=ACQUIRE_SOURCE,
        options=lambda wildcards: ACQUIRE_MANIFEST_OPTIONS.get(ACQUIRE_SOURCE, lambda w: {})(wildcards),
    log:
        logs("acquired", "{sim}"),
    benchmark:
        results("benchmarks", "acquired", "{sim}.tsv")
    resources:
        runtime=60,
        mem_mb=1000,
    conda:
        "../envs/sim.yaml"
    script:
        "../scripts/acquired.py"


FINAL_TARGETS.extend(manifest(sim) for sim in ACQUIRED_RUNS)
