"""Deterministic quadratic: how fast Lookahead's slow weights converge, per eigenvalue.

With gradient descent inside (step gamma) on L(x) = 1/2 sum_i lambda_i x_i^2, one outer step of
Lookahead multiplies coordinate i of the slow weights by

    rate_LA(lambda) = |1 - alpha + alpha (1 - gamma lambda)^k|

measured here with the package's optimizer and compared with that closed form, with plain GD over
the same k steps (|1 - gamma lambda|^k) and with heavy-ball momentum over k steps (the spectral
radius of its 2x2 iteration matrix, to the k-th power).

    python bench/paper/quadratic_convergence.py    # table + bench/paper/results/quadratic_convergence.png
"""

from __future__ import annotations

import torch

from lookahead_fused import Lookahead
from results_io import save

def rate_lookahead(lam, gamma, k, alpha):
    return abs(1 - alpha + alpha * (1 - gamma * lam) ** k)


def rate_gd(lam, gamma, k):
    return abs(1 - gamma * lam) ** k


def rate_momentum(lam, gamma, beta, k):
    """Spectral radius^k of heavy ball x' = x - gamma lam x + beta (x - x_prev)."""
    matrix = torch.tensor([[1 + beta - gamma * lam, -beta], [1.0, 0.0]], dtype=torch.float64)
    return torch.linalg.eigvals(matrix).abs().max().item() ** k


def measured_lookahead_rates(lambdas, gamma, k, alpha):
    """Per-eigenvalue ratio of the slow weights over one outer step (the dynamics are linear, so
    one step from x = 1 gives the rate), with the package's Lookahead."""
    lam = torch.tensor(lambdas, dtype=torch.float64)
    x = torch.nn.Parameter(torch.ones(len(lambdas), dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([x], lr=gamma), k=k, alpha=alpha)
    for _ in range(k):
        x.grad = lam * x.detach()
        opt.step()
    return x.detach().abs().tolist()  # x is the slow weight right after the sync


def study(gamma=1.0, k=5, alpha=0.5, beta=0.9, lambdas=None):
    lambdas = lambdas or [10 ** (e / 10) for e in range(-30, 3)]  # 1e-3 .. ~1.6 (gamma lambda < 2)
    measured = measured_lookahead_rates(lambdas, gamma, k, alpha)
    rows = [
        {
            "lambda": lam,
            "lookahead_measured": m,
            "lookahead_theory": rate_lookahead(lam, gamma, k, alpha),
            "gd_k_steps": rate_gd(lam, gamma, k),
            "momentum_k_steps": rate_momentum(lam, gamma, beta, k),
        }
        for lam, m in zip(lambdas, measured)
    ]
    return {"gamma": gamma, "k": k, "alpha": alpha, "beta": beta, "rows": rows}


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    lam = [r["lambda"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(lam, [r["lookahead_theory"] for r in rows], label=f"Lookahead theory (k={result['k']}, alpha={result['alpha']})")
    ax.plot(lam, [r["lookahead_measured"] for r in rows], "o", markersize=3, label="Lookahead measured")
    ax.plot(lam, [r["gd_k_steps"] for r in rows], label=f"GD, {result['k']} steps")
    ax.plot(lam, [r["momentum_k_steps"] for r in rows], label=f"heavy ball beta={result['beta']}, {result['k']} steps")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue lambda (gamma = %g)" % result["gamma"])
    ax.set_ylabel("contraction per k inner steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    result = study()
    print(f"{'lambda':>10} {'LA measured':>12} {'LA theory':>10} {'GD k steps':>11} {'momentum':>9}")
    for r in result["rows"][::4]:
        print(f"{r['lambda']:>10.4g} {r['lookahead_measured']:>12.6f} {r['lookahead_theory']:>10.6f} "
              f"{r['gd_k_steps']:>11.6f} {r['momentum_k_steps']:>9.6f}")  # fmt: skip
    save("quadratic_convergence", result, plot)


if __name__ == "__main__":
    main()
