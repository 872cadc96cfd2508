"""What acquired data is: its source and the settings that choose its universe.

Each run's manifest records them as `acquired_with`. When the workflow loads,
`check_acquired` compares a run already on disk with what the config asks for and
stops, saying what to do, if they differ: Snakemake sees only that the files exist,
so switching `acquire.source` (or the archive's run, base URL or local copy) would
otherwise reuse the old universe as if it were the configured one. A synthetic run
is the exception: its rule's params (seed, acquire.synthetic) make Snakemake
generate it again in place, and its new manifest records the new settings.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..evaluate import LISTS, run_name
from ..schema import ConfigError
from .manifest import read_manifest


def acquired_with(config: dict, run: str) -> dict:
    """The identity of one acquired run ("dark", "hydro", or a held-out or training
    mini-universe's "universes/{name}/{sim}") under `config`."""
    acquire = config["acquire"]
    source = acquire["source"]
    sim = run.rsplit("/", 1)[-1]
    if source == "synthetic":
        universes = {run_name(u["name"], sim): u["seed_offset"] for section, field in LISTS
                     for u in config.get(section, {}).get(field, [])}
        return {"source": source, "seed": config["seed"],
                "seed_offset": universes.get(run, acquire["synthetic"]["seed_offset"])}
    if source == "local":
        return {"source": source, "path": acquire["local"][sim] and str(Path(acquire["local"][sim]).resolve())}
    return {"source": source, "base_url": acquire[source]["base_url"], "run": acquire[source][sim]}


def _settings(identity: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in identity.items())


def check_acquired(data_dir: str | os.PathLike, results_dir: str | os.PathLike, run: str, expected: dict) -> None:
    """Raise ConfigError if `data_dir/run` holds a run acquired otherwise than `expected`, advising
    a data_dir and results_dir of the data's own. A manifest written before identities were
    recorded is compared by its source only.
    """
    path = Path(data_dir) / run / "manifest.json"
    if not path.exists():
        return
    manifest = read_manifest(path.parent)
    recorded = manifest.get("acquired_with", {"source": manifest["source"]})
    if recorded["source"] == expected["source"] == "synthetic":
        return
    if any(recorded[key] != expected.get(key) for key in recorded):
        raise ConfigError(
            f"{path.parent} holds a run acquired with {_settings(recorded)}, but the config asks for "
            f"{_settings(expected)}; it would be used as if it were that run. Give this data directories of "
            f"its own: data_dir (now {data_dir}) and results_dir (now {results_dir}), e.g. "
            f"data_dir: {Path(data_dir).parent / expected['source']}, "
            f"results_dir: {Path(results_dir) / expected['source']}")
