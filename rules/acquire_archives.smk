# Archive sources of the acquire stage: tng (the TNG web API), camels (public
# CAMELS runs) and local (a copy on disk). Each fills ACQUIRE_INPUTS[source] with
# the files it lays out for one run, and ACQUIRE_MANIFEST_OPTIONS[source] with what
# the manifest checkpoint (rules/acquire.smk) must know: which particle types were
# fetched (part_types: [] = no snapshot needed for that run). Rules are defined only
# for the configured source, so the TNG paths have exactly one producer.
# URLs, headers and behaviour: docs/acquire.md.
# Its input functions are in rules/common.smk.

if ACQUIRE_SOURCE == "tng":
    # Cap on concurrent downloads: each chunk job holds one tng_connections; a value
    # given on the command line (--resources tng_connections=N) wins.
    if "tng_connections" not in workflow.global_resources:
        workflow.register_resource("tng_connections", TNG["max_connections"])

    # The chunk counts come from the API's file listing at run time (a checkpoint):
    # TNG100-1-Dark's count is not documented, and reading it from the archive
    # rather than from config means a wrong count cannot silently drop chunks.
    checkpoint tng_listing:
        output:
            tng_listing_file("{sim}"),
        wildcard_constraints:
            sim="dark|hydro",
        # base_url and http (retry policy) are read from config inside the script, not
        # passed as params: changing a mirror or a timeout must not re-trigger downloads.
        params:
            run=lambda w: TNG[w.sim],
            snapshot=SNAPSHOT,
            kinds=lambda w: ["snapshot", "groupcat"] if ACQUIRE_PARTICLES[w.sim] else ["groupcat"],
            fallback_chunks=lambda w: TNG["fallback_chunks"].get(w.sim),
        log:
            logs("tng_listing", "{sim}"),
        benchmark:
            results("benchmarks", "tng_listing", "{sim}.tsv")
        resources:
            tng_connections=1,
            runtime=30,
            mem_mb=500,
        conda:
            "../envs/sim.yaml"
        script:
            "../scripts/acquire_tng_listing.py"

    # One job per chunk file, for both kinds (the same script; `kind` tells them apart).
    for _kind, _path_of in (("snapshot", tng.snapshot_path), ("groupcat", tng.groupcat_path)):

        rule:
            name:
                f"tng_{_kind}_chunk"
            input:
                tng_listing_file("{sim}"),
            output:
                str(_path_of(sim_base("{sim}"), SNAPSHOT, "{chunk}")),
            wildcard_constraints:
                sim="dark|hydro",
            params:
                kind=_kind,
                fields=(lambda w: TNG_FIELDS[w.sim]) if _kind == "snapshot" else None,
            log:
                logs(f"tng_{_kind}_chunk", "{sim}.{chunk}"),
            benchmark:
                results("benchmarks", f"tng_{_kind}_chunk", "{sim}.{chunk}.tsv")
            resources:
                tng_connections=1,
                runtime=240,
                mem_mb=1000,
            conda:
                "../envs/sim.yaml"
            script:
                "../scripts/acquire_tng.py"

    ACQUIRE_INPUTS["tng"] = _tng_inputs
    ACQUIRE_MANIFEST_OPTIONS["tng"] = _tng_manifest_options


if ACQUIRE_SOURCE == "camels":
    CAMELS = config["acquire"]["camels"]

    for _kind, _path_of in (("snapshot", tng.snapshot_path), ("groupcat", tng.groupcat_path)):

        rule:
            name:
                f"camels_{_kind}"
            output:
                str(_path_of(sim_base("{sim}"), SNAPSHOT, 0)),
            wildcard_constraints:
                sim="dark|hydro",
            params:
                kind=_kind,
                run_path=lambda w: CAMELS[w.sim],
                base=lambda w: sim_base(w.sim),
                snapshot=SNAPSHOT,
            log:
                logs(f"camels_{_kind}", "{sim}"),
            benchmark:
                results("benchmarks", f"camels_{_kind}", "{sim}.tsv")
            resources:
                runtime=240,
                mem_mb=1000,
            conda:
                "../envs/sim.yaml"
            script:
                "../scripts/acquire_camels.py"

    ACQUIRE_INPUTS["camels"] = lambda w: [
        str(path_of(sim_base(w.sim), SNAPSHOT, 0))
        for path_of in ((tng.snapshot_path, tng.groupcat_path) if ACQUIRE_PARTICLES[w.sim]
                        else (tng.groupcat_path,))
    ]
    ACQUIRE_MANIFEST_OPTIONS["camels"] = lambda w: {
        "part_types": None if ACQUIRE_PARTICLES[w.sim] else [],
        "archive_run": CAMELS[w.sim],
    }


if ACQUIRE_SOURCE == "local":
    LOCAL = config["acquire"]["local"]
    for _sim in ("dark", "hydro"):
        if not LOCAL[_sim]:
            raise ValueError(f"acquire.source is local: set acquire.local.{_sim} to the run's output directory")

    rule local_link:
        output:
            directory(sim_base("{sim}")),
        wildcard_constraints:
            sim="dark|hydro",
        params:
            src=lambda w: LOCAL[w.sim],
            snapshot=SNAPSHOT,
            particles=lambda w: ACQUIRE_PARTICLES[w.sim],
        log:
            logs("local_link", "{sim}"),
        benchmark:
            results("benchmarks", "local_link", "{sim}.tsv")
        resources:
            runtime=30,
            mem_mb=500,
        conda:
            "../envs/sim.yaml"
        script:
            "../scripts/acquire_local.py"

    ACQUIRE_INPUTS["local"] = lambda w: sim_base(w.sim)
    ACQUIRE_MANIFEST_OPTIONS["local"] = lambda w: {
        "part_types": None if ACQUIRE_PARTICLES[w.sim] else [],
        "checksums": LOCAL["checksums"],
        "local_copy": str(Path(LOCAL[w.sim]).resolve()),
    }
