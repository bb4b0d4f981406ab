"""The paper's quadratic results, reproduced with the package's optimizer (bench/paper/), and the
tasks of the quality studies."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "paper"))
import char_lm  # noqa: E402
import noisy_quadratic as nq  # noqa: E402
import quadratic_convergence as qc  # noqa: E402

CHAINS = 20000


def test_the_char_lm_task_is_deterministic_and_learns():
    """bench/paper/char_lm.py: its corpus is the standard library's sources, split 9:1; two runs of one
    seed give the same curve, and 40 AdamW steps take the validation loss well below a uniform guess
    over the 256 byte values (ln 256 = 5.55)."""
    train_text, val, source = char_lm.corpus()
    assert source["bytes"] == len(train_text) + len(val) == char_lm.CORPUS_BYTES
    assert len(train_text) == char_lm.CORPUS_BYTES * 9 // 10
    data = (train_text, char_lm.validation_windows(val))
    adamw = lambda params: torch.optim.AdamW(params, lr=3e-3)  # noqa: E731
    first = char_lm.train(adamw, 40, 20, data, seed=0)
    assert first == char_lm.train(adamw, 40, 20, data, seed=0)
    assert len(first) == 2 and first[1] < first[0] < math.log(256) - 1.0, first


def test_noisy_quadratic_sgd_variance_matches_theory():
    measured = nq.steady_state_variance([0.5, 1.0], gamma=0.5, sigma=1.0, chains=CHAINS, outer_steps=400)
    for a, v in zip([0.5, 1.0], measured.tolist()):
        assert v / nq.v_sgd(0.5, a, 1.0) == pytest.approx(1, abs=nq.variance_tolerance(CHAINS))


@pytest.mark.parametrize("k,alpha", [(5, 0.5), (10, 0.2), (5, 0.8)])
def test_noisy_quadratic_lookahead_variance_matches_theory(k, alpha):
    # Each chain is one independent sample of the stationary slow weights (started at the mean and
    # run 200 outer steps, far past mixing), so the sample variance's relative error has standard
    # deviation sqrt(2 / (chains - 1)); the tolerance is five of those (5 % for 20000 chains).
    measured = nq.steady_state_variance([1.0], gamma=0.5, sigma=1.0, k=k, alpha=alpha, chains=CHAINS, outer_steps=200)
    theory = nq.v_lookahead(0.5, 1.0, 1.0, k, alpha)
    assert measured.item() / theory == pytest.approx(1, abs=nq.variance_tolerance(CHAINS))
    assert theory < nq.v_sgd(0.5, 1.0, 1.0)  # and Lookahead does reduce the variance


def test_variance_tolerance_is_five_standard_deviations():
    assert nq.variance_tolerance(20001) == pytest.approx(5 * (2 / 20000) ** 0.5)


@pytest.mark.parametrize("k,alpha,gamma", [(5, 0.5, 1.0), (3, 0.3, 0.7), (4, 1.0, 1.0), (6, 0.8, 1.9)])
def test_quadratic_contraction_matches_closed_form(k, alpha, gamma):
    lambdas = [1e-3, 0.05, 0.3, 0.9, 1.0]  # with gamma 1.9 some (1 - gamma lambda) are negative
    measured = qc.measured_lookahead_rates(lambdas, gamma, k, alpha)
    for lam, rate in zip(lambdas, measured):
        assert rate == pytest.approx(qc.rate_lookahead(lam, gamma, k, alpha), rel=1e-10, abs=1e-300)


def test_lookahead_contracts_slow_modes_faster_than_heavy_ball_at_the_top_of_the_spectrum():
    # The paper's point: at large eigenvalues the rate is near 1 - alpha; momentum's plateaus at beta^(k/2).
    assert qc.rate_lookahead(1.0, 1.0, 5, 0.5) < qc.rate_momentum(1.0, 1.0, 0.9, 5)
    assert qc.rate_lookahead(1.0, 1.0, 5, 0.5) == pytest.approx(0.5)


robustness = pytest.importorskip("robustness", reason="scikit-learn (for the digits data) is not installed")


@pytest.fixture(scope="module")
def digits():
    return robustness.digits_split()


@pytest.mark.parametrize("lr,momentum", [(1.0, 0.9), (0.3, 0.99)])
def test_lookahead_is_more_robust_where_sgd_is_unstable(digits, lr, momentum):
    # The paper's robustness claim, on a fixed seed: where plain SGD with heavy momentum is unstable,
    # Lookahead(SGD) ends at less than half its validation loss after 5 epochs.
    def sgd(params):
        return torch.optim.SGD(params, lr=lr, momentum=momentum)

    plain = robustness.train(sgd, False, 5, digits)[-1]
    wrapped = robustness.train(sgd, True, 5, digits)[-1]
    assert wrapped < 0.5 * plain


def test_training_is_deterministic_and_learns(digits):
    def adam(params):
        return torch.optim.Adam(params, lr=3e-3)

    first = robustness.train(adam, True, 3, digits)
    assert first == robustness.train(adam, True, 3, digits)
    assert first[-1] < 0.5 * math.log(10)  # well below chance level


def test_grid_shape(digits):
    heat = robustness.grid(epochs=1, learning_rates=[0.1, 3.0], momenta=[0.0], data=digits)
    assert len(heat["sgd"]) == 1 and len(heat["lookahead"][0]) == 2
    assert heat["sgd"][0][1] == float("inf") or heat["sgd"][0][1] > heat["sgd"][0][0]  # lr 3.0 diverges
