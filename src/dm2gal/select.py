"""Model selection: the sweep point of smallest selection statistic on the validation cube.

Each point's best.ckpt already holds the epoch of smallest selection statistic
(`train.selection_statistic`, averaged over a few epochs, `dm2gal.train`: the honest
validation painting's P(k) error or the validation MSE); this module compares the points
by the same statistic, copies the winner to the selected checkpoint and writes a table of
every point with the reason it won or lost. The lowest validation MSE is listed too, to
show when it would have chosen differently.
"""

from __future__ import annotations

import csv
import logging
import math

import torch

from .atomic import atomic_path

log = logging.getLogger("dm2gal.select")

STATISTIC_NAMES = {"pk_error": "validation P(k)", "val_mse": "validation MSE"}
"""How the summary's reasons name each `train.selection_statistic`."""
COLUMNS = ("point", "learning_rate", "weight_decay", "capacity", "epochs", "best_epoch", "statistic", "selection",
           "pk_error", "val_mse", "val_mse_mean_predictor", "val_mse_floor", "val_mass_ratio", "min_val_mse", "selected",
           "reason")


def _row(point: str, ckpt_path, history_path) -> dict:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    with open(history_path, newline="") as f:
        history = list(csv.DictReader(f))
    h, m = ckpt["hparams"], ckpt["metrics"]
    return dict(point=point, learning_rate=h["learning_rate"], weight_decay=h["weight_decay"],
                capacity=h.get("capacity", 1.0), epochs=len(history), best_epoch=ckpt["epoch"],
                statistic=h.get("selection_statistic", "pk_error"),
                **{k: m[k] for k in ("selection", "pk_error", "val_mse", "val_mse_mean_predictor", "val_mse_floor",
                                     "val_mass_ratio")},
                min_val_mse=min((float(r["val_mse"]) for r in history), default=math.nan))


def select(points: dict[str, tuple[str, str]], out_ckpt, out_tsv) -> str:
    """Pick the point of smallest selection statistic among {name: (best.ckpt, history.csv)}.

    Writes `out_ckpt` (the winner's checkpoint plus 'selected_point') and `out_tsv`
    (COLUMNS, one row per point, best first). Returns the winner's name.
    """
    if not points:
        raise ValueError("no sweep point to select from")
    rows = sorted((_row(name, *paths) for name, paths in points.items()), key=lambda r: r["selection"])
    win = rows[0]
    if len({r["statistic"] for r in rows}) > 1:
        raise ValueError("the sweep points were selected by different statistics: "
                         + ", ".join(f"{r['point']} by {r['statistic']}" for r in rows))
    name = STATISTIC_NAMES[win["statistic"]]
    by_mse = min(rows, key=lambda r: r["val_mse"])
    for r in rows:
        r["selected"] = int(r is win)
        if r is win:
            runner = (f"; next best {rows[1]['point']} at {rows[1]['selection']:.4g}" if len(rows) > 1 else
                      "; the only point")
            r["reason"] = f"smallest {name} selection statistic {r['selection']:.4g}{runner}"
            if by_mse is not win:
                r["reason"] += f"; lowest validation MSE would have chosen {by_mse['point']}"
        else:
            r["reason"] = f"{name} selection statistic {r['selection']:.4g} > {win['selection']:.4g}"
    ckpt = torch.load(points[win["point"]][0], map_location="cpu", weights_only=True)
    ckpt["selected_point"] = win["point"]
    with atomic_path(out_ckpt) as tmp:
        torch.save(ckpt, tmp)
    with atomic_path(out_tsv) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    log.info("selected %s: %s", win["point"], win["reason"])
    return win["point"]
