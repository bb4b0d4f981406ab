"""The paper's noisy quadratic model (section 3), with the package's own optimizers.

    L(x) = 1/2 (x - c)^T A (x - c),  c ~ N(0, diag(sigma^2)) drawn anew every step,  A diagonal.

Many independent chains run at once as the rows of one parameter tensor. After burn-in, the
variance across chains of SGD's iterate and of Lookahead's slow weights (read right after a sync)
is compared with the closed forms of the paper:

    V_SGD = gamma a sigma^2 / (2 - gamma a)
    V_LA  = alpha^2 (1 - q^2k) / (alpha^2 (1 - q^2k) + 2 alpha (1 - alpha)(1 - q^k)) * V_SGD,  q = 1 - gamma a

    python bench/paper/noisy_quadratic.py          # table + bench/paper/results/noisy_quadratic.png
"""

from __future__ import annotations

import argparse
import math

import torch

from lookahead_fused import Lookahead
from results_io import save

def v_sgd(gamma: float, a: float, sigma: float) -> float:
    return gamma * a * sigma**2 / (2 - gamma * a)


def v_lookahead(gamma: float, a: float, sigma: float, k: int, alpha: float) -> float:
    q = 1 - gamma * a
    numerator = alpha**2 * (1 - q ** (2 * k))
    return numerator / (numerator + 2 * alpha * (1 - alpha) * (1 - q**k)) * v_sgd(gamma, a, sigma)


def steady_state_variance(curvatures, gamma, sigma, *, k=None, alpha=None, chains=20000, outer_steps=300, seed=0):
    """Variance across chains, per coordinate: SGD's iterate when k is None, else Lookahead's slow
    weights after `outer_steps` syncs. Every chain is one independent sample (no time averaging)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor(curvatures, dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(chains, len(curvatures), dtype=torch.float64))
    inner = torch.optim.SGD([x], lr=gamma)
    opt = inner if k is None else Lookahead(inner, k=k, alpha=alpha)
    steps = outer_steps * (k or 1)
    for _ in range(steps):
        c = sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        x.grad = a * (x.detach() - c)
        opt.step()
    return x.detach().var(dim=0, unbiased=True)


def variance_tolerance(chains: int, sigmas: float = 5.0) -> float:
    """Relative tolerance for a variance from `chains` independent Gaussian samples: the sample
    variance's relative standard deviation is sqrt(2 / (chains - 1))."""
    return sigmas * math.sqrt(2 / (chains - 1))


def study(gamma=0.5, a=1.0, sigma=1.0, ks=(5, 10), alphas=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), chains=20000):
    sgd = steady_state_variance([a], gamma, sigma, chains=chains)[0].item()
    rows = []
    for k in ks:
        for alpha in alphas:
            measured = steady_state_variance([a], gamma, sigma, k=k, alpha=alpha, chains=chains, outer_steps=200)[0].item()
            rows.append({"k": k, "alpha": alpha, "measured_ratio": measured / sgd,
                         "theory_ratio": v_lookahead(gamma, a, sigma, k, alpha) / v_sgd(gamma, a, sigma)})  # fmt: skip
    return {"gamma": gamma, "a": a, "sigma": sigma, "chains": chains, "sgd_measured": sgd,
            "sgd_theory": v_sgd(gamma, a, sigma), "rows": rows}  # fmt: skip


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, k in enumerate(sorted({r["k"] for r in result["rows"]})):
        rows = [r for r in result["rows"] if r["k"] == k]
        fine = [j / 100 for j in range(1, 101)]
        theory = [v_lookahead(result["gamma"], result["a"], result["sigma"], k, al) / result["sgd_theory"] for al in fine]
        ax.plot(fine, theory, color=f"C{i}", label=f"theory, k={k}")
        ax.plot([r["alpha"] for r in rows], [r["measured_ratio"] for r in rows], "o", color=f"C{i}", label=f"measured, k={k}")
    ax.set_xlabel("alpha")
    ax.set_ylabel("V_LA / V_SGD")
    ax.set_title(f"Noisy quadratic, gamma a = {result['gamma'] * result['a']}, {result['chains']} chains", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=20000)
    args = parser.parse_args(argv)
    result = study(chains=args.chains)
    print(f"SGD: measured variance {result['sgd_measured']:.4f}, theory {result['sgd_theory']:.4f}")
    print(f"{'k':>3} {'alpha':>6} {'measured V_LA/V_SGD':>20} {'theory':>8}")
    for r in result["rows"]:
        print(f"{r['k']:>3} {r['alpha']:>6.2f} {r['measured_ratio']:>20.4f} {r['theory_ratio']:>8.4f}")
    save("noisy_quadratic", result, plot)


if __name__ == "__main__":
    main()
