"""Clear the lock that a killed Snakemake left in a working directory, when it is safe.

Snakemake locks its working directory (`.snakemake/locks/`) while it runs and
removes the lock when it ends; a driver killed with SIGKILL (or by a lost
session) leaves it behind, and every later run stops with "Directory cannot be
locked" until `snakemake --unlock`. `make run` calls `python -m dm2gal.locks`
first: it removes the lock only if no process of this machine is a Snakemake (or
one of its jobs) working in that directory; otherwise it leaves the lock, and
Snakemake refuses the second run as it should. Only this machine's processes can
be seen: a driver on another login node of a cluster is not, so `make run` is for
one machine, and cluster runs unlock by hand (docs/cluster.md).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PROC = Path("/proc")


def snakemake_here(workdir: str | os.PathLike) -> list[int] | None:
    """Pids of this machine's processes that mention snakemake on their command line and work
    in `workdir`, or None when that cannot be told (no /proc, or such a process of another user)."""
    if not PROC.is_dir():
        return None
    workdir = Path(workdir).resolve()
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if b"snakemake" not in (entry / "cmdline").read_bytes():
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:  # ended meanwhile
            continue
        except PermissionError:
            return None
        if cwd == workdir:
            pids.append(int(entry.name))
    return pids


def clear_stale_lock(workdir: str | os.PathLike = ".") -> str | None:
    """Remove `workdir`'s Snakemake lock if no Snakemake works there; says what was done (None: no lock)."""
    locks = Path(workdir) / ".snakemake" / "locks"
    files = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    if not files:
        return None
    alive = snakemake_here(workdir)
    if alive is None:
        return (f"{locks} holds a lock and it cannot be told whether a Snakemake still runs here: "
                f"if none does, `snakemake --unlock` removes it")
    if alive:
        return f"{locks} holds the lock of a Snakemake that still runs here (pid {', '.join(map(str, alive))})"
    for f in files:
        f.unlink(missing_ok=True)
    return f"removed the lock that a killed Snakemake run left in {locks} (no Snakemake runs in this directory)"


if __name__ == "__main__":
    message = clear_stale_lock(sys.argv[1] if len(sys.argv) > 1 else ".")
    if message:
        print(message, file=sys.stderr)
