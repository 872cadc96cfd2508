"""The summary tables of the Snakemake report: the files a reviewer opens first, as HTML.

`split/cubes.json` (the validation and test cubes side by side, and the split's scalars),
`paint/test/occupancy.json` (the occupancy threshold and its scores on the training region
and the test cube side by side) and `select/summary.tsv` (one row per sweep point, the
selected one in bold). `write_page` is also the page of metrics.json's verdict table.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

from .atomic import atomic_path

TABLES = {
    "split": dict(title="split/cubes.json: the validation and test cubes", columns=("validation", "test")),
    "occupancy": dict(title="paint/test/occupancy.json: where galaxies go", columns=("training", "test")),
    "select": dict(title="select/summary.tsv: the sweep points and the selected one", columns=()),
}
"""Table name -> page title and the entries of the file shown side by side as columns."""

STYLE = "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #999;padding:2px 6px}"


def html_page(title: str, body: str) -> str:
    """A standalone HTML page (the Snakemake report shows it in a frame)."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def write_page(path: str | os.PathLike, title: str, body: str) -> None:
    """Write `html_page(title, body)` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(html_page(title, body))


def cell(value) -> str:
    """A value as table text: floats to 4 significant digits, lists item by item, None as a dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return html.escape("[" + ", ".join(html.unescape(cell(v)) for v in value) + "]")
    return html.escape(str(value))


def table(head, rows, bold=()) -> str:
    """An HTML table of `head` and `rows` (lists of already formatted cells); rows at the
    indices in `bold` are set in bold."""
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr></thead>",
             "<tbody>"]
    for i, row in enumerate(rows):
        wrap = ("<b>", "</b>") if i in bold else ("", "")
        lines.append("<tr>" + "".join(f"<td>{wrap[0]}{c}{wrap[1]}</td>" for c in row) + "</tr>")
    return "\n".join(lines + ["</tbody>", "</table>", ""])


def flatten(entry: dict, prefix: str = "") -> dict:
    """{dotted key: scalar or list} of a nested dict."""
    out = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def side_by_side(report: dict, columns: tuple[str, ...]) -> str:
    """A JSON report as two tables: its other entries as key / value, then the entries named in
    `columns` (dicts of the same keys) as one column each."""
    rest = flatten({k: v for k, v in report.items() if k not in columns})
    parts = [table(("key", "value"), [[html.escape(k), cell(v)] for k, v in rest.items()])]
    present = [c for c in columns if c in report]
    if present:
        flat = {c: flatten(report[c] or {}) for c in present}
        keys = list(dict.fromkeys(k for c in present for k in flat[c]))
        parts.append(table(("", *present), [[html.escape(k), *(cell(flat[c].get(k)) for c in present)]
                                            for k in keys]))
    return "\n".join(parts)


def tsv_table(path: str | os.PathLike) -> str:
    """A TSV file (select/summary.tsv) as a table, the row with `selected` 1 in bold."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    head = list(rows[0]) if rows else []
    bold = [i for i, r in enumerate(rows) if r.get("selected") == "1"]
    return table(head, [[cell(_number(r[h])) for h in head] for r in rows], bold)


def _number(text: str):
    """A TSV field as a float when it is one (for the digits shown), else the text."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def write_summary_table(name: str, source: str | os.PathLike, out: str | os.PathLike) -> None:
    """The HTML page of summary table `name` (a key of TABLES) from its source file."""
    spec = TABLES[name]
    if Path(source).suffix == ".json":
        body = side_by_side(json.loads(Path(source).read_text()), spec["columns"])
    else:
        body = tsv_table(source)
    write_page(out, spec["title"], f"<h3>{html.escape(spec['title'])}</h3>\n{body}")
