"""Shared pytest fixtures: paths of the repository and its virtual environment."""

from pathlib import Path
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The bin/ of the interpreter running the tests (snakemake lives beside it)."""


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
