"""3D fields on a periodic grid, stored as chunked Zarr v3 arrays with their attributes.

Every field carries, in its Zarr attributes: `box_size` [Mpc/h], `n_grid`,
`units`, `source` (the run it was built from), `snapshot`, `mas` (mass-assignment
scheme) and `quantity` (what the field holds). Readers take periodic sub-cubes, so
no stage needs a whole 2048^3 field in memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path

REQUIRED_ATTRS = ("box_size", "n_grid", "units", "source", "snapshot", "mas", "quantity")
DEFAULT_CHUNK = 128
"""Zarr chunk edge in voxels (128^3 float32 = 8 MiB uncompressed)."""


def field_attrs(
    *, box_size: float, n_grid: int, source: str, snapshot: int, mas: str, quantity: str,
    units: str = "Msun/h", **extra,
) -> dict:
    """The attribute set every stored field carries (box_size in Mpc/h)."""
    return dict(box_size=float(box_size), n_grid=int(n_grid), units=units, source=source,
                snapshot=int(snapshot), mas=mas, quantity=quantity, **extra)


def cube_attrs(parent: dict, start, size: int, **extra) -> dict:
    """The attributes of a field cut from `parent`'s grid (a painted, HOD or truth cube): its
    side [Mpc/h] and voxels, first voxel `origin` of the parent grid, the parent's n_grid and
    box_size, the parent's source, snapshot, mas, quantity and units unless `extra` says
    otherwise, and `extra`."""
    n = int(parent.get("parent_n_grid", parent["n_grid"]))
    box = float(parent.get("parent_box_size", parent["box_size"]))
    base = dict(source=parent["source"], snapshot=int(parent["snapshot"]), mas=parent["mas"],
                quantity=parent["quantity"], units=parent.get("units", "Msun/h"))
    return field_attrs(**{**base, **extra, "box_size": size * box / n, "n_grid": size,
                          "origin": [int(s) for s in start], "parent_n_grid": n, "parent_box_size": box})


def create_field(path: str | os.PathLike, attrs: dict, chunk: int = DEFAULT_CHUNK, dtype="float32", shape=None):
    """Create an empty (n_grid^3) Zarr v3 array at `path` with compressed cubic chunks.

    The caller fills it (whole or slab by slab); wrap creation and filling in
    `dm2gal.atomic.atomic_path` so the final path appears only when complete. `shape`
    (default the field's) makes a slab store of the field: the field's chunks and codecs, so
    that `link_chunks` can link its chunk files into the field.
    """
    import zarr  # ~1 s to import; the Snakefile imports this module (via grid) on every job

    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"field attributes missing {missing}")
    n = int(attrs["n_grid"])
    c = min(chunk, n)
    return zarr.create_array(store=str(path), shape=(n, n, n) if shape is None else tuple(shape), chunks=(c, c, c),
                             dtype=dtype,
                             fill_value=0, attributes=attrs, overwrite=True)


def write_field(path: str | os.PathLike, data: np.ndarray, attrs: dict, chunk: int = DEFAULT_CHUNK) -> None:
    """Write a whole cubic field at once, atomically (tmp store, then move)."""
    if data.ndim != 3 or len(set(data.shape)) != 1 or data.shape[0] != attrs["n_grid"]:
        raise ValueError(f"field of shape {data.shape} does not match n_grid={attrs['n_grid']}")
    with atomic_path(path, needs_bytes=data.nbytes) as tmp:
        arr = create_field(tmp, attrs, chunk=chunk, dtype=data.dtype)
        arr[...] = data


def open_field(path: str | os.PathLike):
    """Open a stored field read-only; raises FileNotFoundError naming the path."""
    import zarr  # ~1 s to import; the Snakefile imports this module (via grid) on every job

    if not Path(path).exists():
        raise FileNotFoundError(f"no field at {path}")
    return zarr.open_array(str(path), mode="r")


def read_field(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a whole field into memory: (array (n, n, n), attributes)."""
    arr = open_field(path)
    return arr[...], dict(arr.attrs)


def read_periodic(arr, start, size) -> np.ndarray:
    """Sub-cube [start, start + size) of a cubic array or Zarr field, wrapping periodically.

    `start` and `size` are 3-tuples of voxel indices (start may be negative or
    beyond n). Reads only the chunks it needs.
    """
    n = arr.shape[0]
    out = np.empty(tuple(int(s) for s in size), dtype=arr.dtype)
    idx = [np.arange(int(a), int(a) + int(s)) % n for a, s in zip(start, size)]
    # Split each axis into contiguous runs so Zarr reads whole slices, not fancy indices.
    runs = [_contiguous_runs(i) for i in idx]
    for ox, sx in runs[0]:
        for oy, sy in runs[1]:
            for oz, sz in runs[2]:
                out[ox, oy, oz] = arr[sx, sy, sz]
    return out


def _contiguous_runs(indices: np.ndarray) -> list[tuple[slice, slice]]:
    """(output slice, source slice) pairs covering `indices`, one per contiguous run."""
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    bounds = np.concatenate([[0], breaks, [len(indices)]])
    return [(slice(int(a), int(b)), slice(int(indices[a]), int(indices[b - 1]) + 1))
            for a, b in zip(bounds[:-1], bounds[1:])]


def link_chunks(slab: Path, field: Path, offset: int, field_meta: dict) -> None:
    """Link the chunk files c/i/j/k of one slab store into the field as c/(i + offset)/j/k (copied
    where hard links fail): a field assembled from x-slabs (the slab gridder, slab painting)
    without re-encoding. `field_meta` is the field's zarr.json; the slab's must match its chunks
    and codecs."""
    meta = json.loads((slab / "zarr.json").read_text())
    for key in ("chunk_grid", "chunk_key_encoding", "codecs", "data_type", "fill_value"):
        if meta[key] != field_meta[key]:
            raise ValueError(f"slab store {slab} has {key}={meta[key]}, the field {field_meta[key]}")
    if meta["chunk_key_encoding"] != {"name": "default", "configuration": {"separator": "/"}}:
        raise ValueError(f"{slab}: unsupported chunk key encoding {meta['chunk_key_encoding']}")
    root = slab / "c"
    for src in root.rglob("*") if root.exists() else ():
        if src.is_dir():
            continue
        i, j, k = src.relative_to(root).parts
        dst = field / "c" / str(int(i) + offset) / j / k
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            dst.write_bytes(src.read_bytes())
