"""Config validation against the JSON schema, with short messages, and schema defaults.

`validate_config` checks a config against workflow/schemas/config.schema.yaml and
the stage schemas it `$ref`s, and raises `ConfigError` with one line per problem
naming the key: an unknown key with the nearest valid names (not the whole schema,
as Snakemake's `validate()` prints), a wrong value with what is allowed.

Snakemake's `validate()` also fills defaults only in the schema file it is given:
below a `$ref` to another file (each stage's schema) jsonschema validates with
the referenced file's own `$schema` dialect, which sets no defaults. So a
config that gives `grid: {n_grid: 64}` would lack `grid.method`. `fill_defaults`
walks the schema, following `$ref`s to sibling files, and sets every missing
key that has a default, at any depth.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

MAX_ERRORS = 5
"""Problems listed at most in one ConfigError (the rest are counted)."""


class ConfigError(ValueError):
    """A config value the pipeline cannot run with; the message names the key."""


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


def _key(path) -> str:
    """A config key as users write it: evaluation.universes[0].name (from jsonschema's path)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the config"


def _describe(error) -> str:
    """One line for one jsonschema error: the key, and the nearest valid names of an unknown key."""
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        valid = sorted(error.schema.get("properties", {}))
        lines = []
        for name in sorted(set(error.instance) - set(valid)):
            prefix = f"{key}." if error.absolute_path else ""
            near = [prefix + n for n in difflib.get_close_matches(name, valid, n=3, cutoff=0.6)]
            hint = f"did you mean {' or '.join(near)}?" if near else f"valid keys here: {', '.join(valid)}"
            lines.append(f"unknown key {prefix}{name}: {hint}")
        return "\n".join(lines)
    return f"{key}: {error.message}"


def validate_config(config: dict, schema_file: str | Path) -> None:
    """Raise ConfigError unless `config` satisfies the schema (following `$ref`s to sibling files)."""
    schema_file = Path(schema_file).resolve()
    schema = dict(yaml.safe_load(schema_file.read_text()), **{"$id": schema_file.as_uri()})

    def retrieve(uri: str) -> Resource:
        return Resource.from_contents(yaml.safe_load(Path(url2pathname(urlparse(uri).path)).read_text()))

    validator = Draft202012Validator(schema, registry=Registry(retrieve=retrieve))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [line for e in errors[:MAX_ERRORS] for line in _describe(e).splitlines()]
        if len(errors) > MAX_ERRORS:
            lines.append(f"... and {len(errors) - MAX_ERRORS} more")
        raise ConfigError(f"invalid config (keys and allowed values: {schema_file.parent}/*.schema.yaml):\n  "
                          + "\n  ".join(lines))
