"""Figures with bands over HOD draws and held-out universes, on toy universes through
`dm2gal.stats.summarise` (tests/test_metrics.py builds them)."""

import numpy as np
from test_metrics import BOX, CFG, N, noisy_copy, toy_universe
from toy_universe import toy_fields

from dm2gal import figures, stats


def run_groups() -> dict:
    """A test cube and two held-out universes: dm2gal = the 40 most massive galaxies only (P and B
    ratios far above 3),
    the HOD 4 noisy copies, the ideal painter the truth with 0.05 dex, the oracle on 'test'."""
    painter = lambda t, rng: np.where(t >= np.sort(t.ravel())[-40], t, 0)  # noqa: E731
    groups = {name: toy_universe(seed, painter, copy_dex=0.2) for name, seed in (("test", 0), ("a", 1), ("b", 2))}
    for name, seed in (("test", 0), ("a", 1), ("b", 2)):
        t = toy_fields(N, seed=seed)["stellar"]
        groups[name]["ideal"] = stats.summarise(noisy_copy(t, np.random.default_rng(seed), 0.05), BOX, CFG, truth=t)
    t = toy_fields(N, seed=0)["stellar"]
    groups["test"]["dm2gal_oracle"] = stats.summarise(noisy_copy(t, np.random.default_rng(9), 0.1), BOX, CFG,
                                                      truth=t)
    return groups


def test_every_model_stays_inside_the_ratio_panels():
    import matplotlib.pyplot as plt

    groups = run_groups()
    for name, cols in (("test", {"test": groups["test"]}), ("held-out", {"a": groups["a"], "b": groups["b"]})):
        for spec in (figures.PK, figures.bk_spec(0), figures.bk_spec(1), figures.PDF):
            fig, (top, bottom) = plt.subplots(2, 1)
            figures.stat_panel(top, cols, spec, bottom)
            lo, hi = bottom.get_ylim()
            labels = [line.get_label() for line in bottom.get_lines()]
            for model in ("dm2gal", "hod", "ideal"):
                assert figures.STYLE[model]["label"] in labels, (name, model)
            for line in bottom.get_lines():
                y = np.asarray(line.get_ydata(), dtype=float)
                y = y[np.isfinite(y)]
                assert y.size == 0 or (lo <= y.min() and y.max() <= hi), (name, line.get_label(), y, lo, hi)
            # The HOD's band (draw scatter; universes and draws) and dm2gal's across universes.
            n_bands = len(bottom.collections)
            assert n_bands >= (1 if name == "test" else 2), (name, n_bands)
            plt.close(fig)
    # The sparse painter's B ratio reaches far above 3: the axis is not clipped at 3.
    fig, (top, bottom) = plt.subplots(2, 1)
    figures.stat_panel(top, {"test": groups["test"]}, figures.bk_spec(0), bottom)
    assert bottom.get_ylim()[1] > 3
    plt.close(fig)


def test_statistic_figures_have_a_column_per_universe_set(tmp_path):
    groups = run_groups()
    assert [c for c, _ in figures.columns(groups)] == ["test cube", "held-out universes (2)"]
    written = figures.pk_figure(groups, tmp_path / "pk", CFG["k_range"], dpi=60)
    written += figures.bk_figure(groups, tmp_path / "bk", dpi=60)
    written += figures.pdf_figure(groups, tmp_path / "pdf", 8.5, dpi=60)
    written += figures.r_figure(groups, tmp_path / "r", 2.0, dpi=60)
    assert len(written) == 8
    for path in written:
        head = open(path, "rb").read(8)
        assert head.startswith(b"\x89PNG" if str(path).endswith("png") else b"%PDF")
    # Only the test cube: one column.
    assert len(figures.columns({"test": groups["test"]})) == 1
    figures.bk_figure({"test": groups["test"]}, tmp_path / "bk_test", dpi=60)


def test_a_single_hod_draw_is_drawn_without_a_band():
    import matplotlib.pyplot as plt

    g = run_groups()["test"]
    one = dict(g, hod=stats.stack_realisations([stats.summarise(toy_fields(N, seed=0)["stellar"], BOX, CFG,
                                             truth=toy_fields(N, seed=0)["stellar"])]))
    fig, ax = plt.subplots()
    rows = figures.instances({"test": one}, "hod", figures.PK, ratio=True)
    assert rows.shape[0] == 1 and np.allclose(rows, 1.0)
    figures.stat_panel(ax, {"test": one}, figures.PK)
    plt.close(fig)
