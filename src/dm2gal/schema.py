"""Schema defaults for a config that names only some keys.

Snakemake's `validate()` fills defaults only in the schema file it is given:
below a `$ref` to another file (each stage's schema) jsonschema validates with
the referenced file's own `$schema` dialect, which sets no defaults. So a
config that gives `grid: {n_grid: 64}` would lack `grid.method`. `fill_defaults`
walks the schema, following `$ref`s to sibling files, and sets every missing
key that has a default, at any depth.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml


def _resolve(schema: dict, base: Path) -> tuple[dict, Path]:
    """The schema behind a `$ref` to a file (keys beside the `$ref` win), and its directory."""
    if "$ref" not in schema or schema["$ref"].startswith("#"):
        return schema, base
    path = (base / schema["$ref"]).resolve()
    target = yaml.safe_load(path.read_text())
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}, path.parent


def _fill(node: dict, schema: dict, base: Path) -> None:
    schema, base = _resolve(schema, base)
    for key, sub in schema.get("properties", {}).items():
        sub, sub_base = _resolve(sub, base)
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            _fill(node[key], sub, sub_base)


def fill_defaults(config: dict, schema_file: str | Path) -> dict:
    """Set, in place, every key of `config` that is missing and has a schema default; returns it."""
    schema_file = Path(schema_file).resolve()
    _fill(config, yaml.safe_load(schema_file.read_text()), schema_file.parent)
    return config
