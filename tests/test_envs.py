"""The conda environments (envs/*.yaml) agree with pyproject.toml, and every rule
runs in one of them (issue 6)."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from snakemake_run import rule_blocks

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
CONDA_TO_PYPI = {"pytorch": "torch"}
"""conda-forge names that differ from the PyPI name of the same package."""
NOT_PACKAGES = {"python", "pip"}
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema", "referencing"}
"""Needed by the Snakemake process that submits jobs, not inside the jobs' environments."""
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def normalise(name: str) -> str:
    """PEP 503 name, conda names mapped to PyPI's."""
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PYPI.get(name, name)


def split_requirement(spec: str) -> tuple[str, str]:
    """('numpy', '>=1.26') from 'numpy>=1.26' (conda's 'numpy >=1.26' and '=' pins alike)."""
    name, rest = REQUIREMENT.match(spec.split("::")[-1]).groups()
    return normalise(name), rest.replace(" ", "")


def pyproject_dependencies() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(split_requirement(d) for d in deps)


def env_dependencies(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    specs = []
    for dep in env["dependencies"]:
        specs.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    return dict(split_requirement(s) for s in specs)


def test_envs_exist():
    assert {p.stem for p in ENVS} >= {"sim", "torch", "stats"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_packages_agree_with_pyproject(env: Path):
    project = pyproject_dependencies()
    deps = env_dependencies(env)
    assert yaml.safe_load(env.read_text())["channels"][0] == "conda-forge"
    for name, bound in deps.items():
        if name in NOT_PACKAGES:
            continue
        assert name in project, f"{env.name}: {name} is not a dependency in pyproject.toml"
        assert bound == project[name], f"{env.name}: {name}{bound} but pyproject.toml has {name}{project[name]}"


def test_every_dependency_is_in_an_env():
    in_envs = set().union(*(env_dependencies(e) for e in ENVS))
    missing = set(pyproject_dependencies()) - DRIVER_ONLY - in_envs
    assert not missing, f"pyproject.toml dependencies in no envs/*.yaml: {sorted(missing)}"


def imported_modules() -> set[str]:
    """Top-level modules imported anywhere in src/dm2gal and scripts/."""
    modules = set()
    for path in [*(REPO / "src" / "dm2gal").rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_every_import_is_a_dependency():
    """Each third-party module the code imports comes from a distribution pyproject.toml names."""
    project = set(pyproject_dependencies())
    providers = importlib.metadata.packages_distributions()
    third_party = imported_modules() - set(sys.stdlib_module_names) - {"dm2gal", "snakemake", "__future__"}
    undeclared = {}
    for module in sorted(third_party):
        dists = {normalise(d) for d in providers.get(module, [])}
        assert dists, f"{module} is imported but no installed distribution provides it"
        if not dists & project:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_every_job_rule_has_a_conda_env():
    """Every rule that runs code names an existing envs/*.yaml in a `conda:` directive."""
    names = {p.name for p in ENVS}
    for rule, block in rule_blocks().items():
        conda = re.search(r"^\s+conda:\s*\n?\s*\"([^\"]+)\"", block, re.M)
        if re.search(r"^\s+(script|shell|run|notebook|wrapper):", block, re.M):
            assert conda, f"rule {rule} runs code but has no conda: directive"
        if conda:
            assert Path(conda.group(1)).name in names, f"rule {rule}: {conda.group(1)} is not in envs/"
