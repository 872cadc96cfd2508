"""Logging for rule scripts: everything a job says goes to its Snakemake `log:` file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | None) -> logging.Logger:
    """Send the `dm2gal` logger (level INFO), warnings and stderr (tqdm, tracebacks) to `path`.

    Rule scripts call `log_to_file(snakemake.log[0])` first; with `path=None`
    (library use) messages go to stderr. Returns the `dm2gal` logger.
    """
    handlers: list[logging.Handler]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "a", buffering=1)
        sys.stderr = stream
        handlers = [logging.StreamHandler(stream)]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.captureWarnings(True)
    return logging.getLogger("dm2gal")
