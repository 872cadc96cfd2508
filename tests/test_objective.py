"""Known answers for the training objectives on a toy problem with a steep mass function.

y | x ~ N(x, 0.3^2) with x = 8 + Exp(0.4): n(y) falls by e every 0.4 dex, so the paper's
inverse-count draws tilt a plain MSE's optimum up by sigma^2 / 0.4 = 0.22 dex (checked
from x = 9, three sigma above the edge of the distribution). The
importance-weighted likelihood of the unbiased objective has the unweighted conditional
mean and scatter as its optimum, and its log-normal mean mass sums to the true mass.
"""

import numpy as np
import pytest
import torch

from dm2gal.inference import Prediction, decode
from dm2gal.model import head_outputs
from dm2gal.objective import gaussian_nll, loss
from dm2gal.sampler import WeightedDraws
from dm2gal.split import input_weights, sample_weights

SIGMA, SLOPE = 0.3, 0.4


def toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = 8.0 + rng.exponential(SLOPE, n)
    return x, x + SIGMA * rng.standard_normal(n)


def fit_toy(objective: str, steps: int = 3000, seed: int = 0, weight_by: str = "target") -> torch.nn.Module:
    """A small MLP head (mean, log scatter) on x, trained on inverse-count draws of the toy,
    counted in bins of the target y (the paper; importance weights undo it) or of the input x
    (no importance weights: the weights depend on x alone)."""
    x, y = toy(100_000, seed)
    index = np.zeros((len(x), 3), np.int64)
    index[:, 0] = np.arange(len(x))
    if weight_by == "target":
        weights, _ = sample_weights(10.0 ** y, 100, 1e8, 10 ** 11.5, power=1.0)
        draws = WeightedDraws(index, y.astype(np.float32), weights, seed=seed, rotate=False)
    else:
        weights, _ = input_weights(10.0 ** x, 100, power=1.0)
        draws = WeightedDraws(index, y.astype(np.float32), weights, seed=seed, rotate=False,
                              importance=np.ones(len(x)))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, head_outputs(objective)))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt = torch.as_tensor(x - 9.0, dtype=torch.float32)[:, None]
    for step in range(steps):
        centres, _, target, importance = draws.draw(512)
        out = net(xt[centres[:, 0]])
        value = loss(out, target - 9.0, importance, objective, beta=0.5)
        opt.zero_grad()
        value.backward()
        opt.step()
        if step == steps // 2:
            opt.param_groups[0]["lr"] = 0.002
    return net


def predictions(net, x) -> Prediction:
    with torch.no_grad():
        out = net(torch.as_tensor(x - 9.0, dtype=torch.float32)[:, None])
    return decode(out, dict(target_mean=9.0, target_std=1.0), axis=1)


def binned_bias(x, y, pred: Prediction, edges) -> np.ndarray:
    b = np.digitize(x, edges) - 1
    return np.array([np.mean(pred.mu[b == i] - y[b == i]) for i in range(len(edges) - 1)])


@pytest.fixture(scope="module")
def held_out():
    return toy(200_000, seed=99)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    return {objective: fit_toy(objective) for objective in ("unbiased", "paper")}


def test_draws_weighted_by_the_input_need_no_importance_weights(held_out):
    """Inverse counts in bins of x (an input) oversample the rare high-x end as much as the
    paper's do, but leave the optimum at the unweighted conditional mean."""
    x, y = held_out
    by_input = binned_bias(x, y, predictions(fit_toy("unbiased", weight_by="input"), x), EDGES)
    assert np.all(np.abs(by_input) < 0.03), by_input


EDGES = np.array([9.0, 9.2, 9.4, 9.7, 10.0, 10.5])


def test_unbiased_objective_has_no_tilt_and_the_paper_objective_does(held_out, fitted):
    x, y = held_out
    unbiased = binned_bias(x, y, predictions(fitted["unbiased"], x), EDGES)
    paper = binned_bias(x, y, predictions(fitted["paper"], x), EDGES)
    assert np.all(np.abs(unbiased) < 0.03), unbiased
    # the weighted optimum: sigma^2 / slope = 0.225 dex above the truth in every bin
    assert np.all(paper > 0.15), paper


def test_the_log_normal_mean_mass_sums_to_the_true_mass_per_bin_of_predicted_mass(held_out, fitted):
    x, y = held_out
    pred = predictions(fitted["unbiased"], x)
    inside = (x >= EDGES[0]) & (x <= EDGES[-1])
    assert np.allclose(pred.sigma[inside], SIGMA, atol=0.02)
    m, truth = pred.mean_mass(), 10.0 ** y
    b = np.digitize(np.log10(m), EDGES) - 1
    for i in range(len(EDGES) - 1):
        sel = b == i
        ratio = m[sel].sum() / truth[sel].sum()
        error = truth[sel].std() * np.sqrt(sel.sum()) / truth[sel].sum()  # sampling error of the true sum
        assert abs(ratio - 1) < 3 * error + 0.01, (i, ratio, error)
        # 10^mu alone paints exp(-(ln10 sigma)^2 / 2) = 0.79 of it
        assert (10.0 ** pred.mu[sel]).sum() / truth[sel].sum() < 0.85


def test_nll_is_minimised_by_the_sample_mean_and_scatter():
    rng = np.random.default_rng(1)
    target = torch.as_tensor(rng.normal(0.7, 0.4, 50_000), dtype=torch.float32)
    grid = [(mu, np.log(s)) for mu in (0.6, 0.7, 0.8) for s in (0.3, 0.4, 0.5)]
    values = [float(gaussian_nll(torch.tensor([[mu, ls]]).expand(len(target), 2), target).mean())
              for mu, ls in grid]
    assert grid[int(np.argmin(values))] == (0.7, np.log(0.4))


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="train.objective"):
        head_outputs("mse")


def test_predicted_scatter_is_calibrated_per_bin_of_predicted_mass(held_out, fitted):
    """z = (y - mu) / sigma on held-out samples is standard normal in every bin (a PIT check);
    a scatter off by 30 % is caught."""
    x, y = held_out
    pred = predictions(fitted["unbiased"], x)
    b = np.digitize(pred.mu, EDGES) - 1
    for scale, ok in ((1.0, True), (1.3, False)):
        z = (y - pred.mu) / (scale * pred.sigma)
        stds = np.array([z[b == i].std() for i in range(len(EDGES) - 1)])
        means = np.array([z[b == i].mean() for i in range(len(EDGES) - 1)])
        calibrated = np.all(np.abs(stds - 1) < 0.1) and np.all(np.abs(means) < 0.1)
        assert calibrated == ok, (scale, stds, means)
