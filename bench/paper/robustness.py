"""Robustness to the inner optimizer's hyperparameters (the paper's heatmaps), on real data that a
package ships: scikit-learn's digits (1797 8x8 images, no download).

A 64-64-10 MLP is trained with SGD and with Lookahead(SGD) (k=5, alpha=0.5) over a grid of inner
learning rates x momentum, from the same initial weights and batch order; the final validation
loss (Lookahead: with its slow weights) fills two heatmaps side by side. Then Adam against
Lookahead(Adam) per epoch, with alpha 0.5 and with alpha="adaptive" (its second moment as curvature).

    python bench/paper/robustness.py               # tables + bench/paper/results/robustness.png
"""

from __future__ import annotations

import argparse
import math

import torch
from sklearn.datasets import load_digits

from lookahead_fused import Lookahead
from results_io import save

LEARNING_RATES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
MOMENTA = [0.0, 0.5, 0.9, 0.99]
DIVERGED = math.log(10)  # a loss above chance level counts as diverged in the figure


def digits_split(seed=0):
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1400], order[1400:]
    return (x[train], y[train]), (x[val], y[val])


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))


def val_loss(model, val) -> float:
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(val[0]), val[1]).item()
    return loss if math.isfinite(loss) else float("inf")


def train(make_inner, lookahead: bool, epochs: int, data, seed=0, batch=64, alpha=0.5, after_step=None,
          **lookahead_options):  # fmt: skip
    """Validation loss after each epoch (Lookahead, k=5, evaluated with its slow weights; so is an
    optimizer from make_inner that has slow weights itself, a LookaheadAdamW); after_step(opt), if
    given, runs after every step."""
    (x, y), val = data
    model = make_model(seed)
    inner = make_inner(model.parameters())
    opt = Lookahead(inner, k=5, alpha=alpha, **lookahead_options) if lookahead else inner
    g = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            if after_step is not None:
                after_step(opt)
        if hasattr(opt, "slow_weights"):
            with opt.slow_weights():
                curve.append(val_loss(model, val))
        else:
            curve.append(val_loss(model, val))
    return curve


def grid(epochs=20, learning_rates=LEARNING_RATES, momenta=MOMENTA, data=None):
    data = data or digits_split()
    out = {"learning_rates": learning_rates, "momenta": momenta, "epochs": epochs, "sgd": [], "lookahead": []}
    for name, lookahead in (("sgd", False), ("lookahead", True)):
        for momentum in momenta:
            out[name].append([
                train(lambda ps, lr=lr, m=momentum: torch.optim.SGD(ps, lr=lr, momentum=m), lookahead, epochs, data)[-1]
                for lr in learning_rates
            ])  # fmt: skip
    return out


def adam_curves(epochs=30, lr=1e-3, data=None):
    data = data or digits_split()
    return {
        "lr": lr,
        "adam": train(lambda ps: torch.optim.Adam(ps, lr=lr), False, epochs, data),
        "lookahead_adam": train(lambda ps: torch.optim.Adam(ps, lr=lr), True, epochs, data),
        "lookahead_adam_adaptive": train(lambda ps: torch.optim.Adam(ps, lr=lr), True, epochs, data, alpha="adaptive"),
    }


def plot(heat, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, name, title in ((axes[0], "sgd", "SGD"), (axes[1], "lookahead", "Lookahead(SGD), k=5, alpha=0.5")):
        values = [[min(v, DIVERGED) for v in row] for row in heat[name]]
        image = ax.imshow(values, vmin=0, vmax=DIVERGED, cmap="viridis_r", origin="lower")
        ax.set_xticks(range(len(heat["learning_rates"])), [str(lr) for lr in heat["learning_rates"]])
        ax.set_yticks(range(len(heat["momenta"])), [str(m) for m in heat["momenta"]])
        ax.set_xlabel("inner learning rate")
        ax.set_ylabel("momentum" if name == "sgd" else "")
        ax.set_title(f"{title}: validation loss", fontsize=9)
        for i, row in enumerate(heat[name]):
            for j, v in enumerate(row):
                dark_cell = v > DIVERGED / 2
                ax.text(j, i, "div" if v >= DIVERGED else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if dark_cell else "k")  # fmt: skip
    fig.colorbar(image, ax=axes[:2], shrink=0.8)
    axes[2].plot(range(1, len(curves["adam"]) + 1), curves["adam"], label=f"Adam lr={curves['lr']}")
    axes[2].plot(range(1, len(curves["lookahead_adam"]) + 1), curves["lookahead_adam"], label="Lookahead(Adam), alpha 0.5")
    axes[2].plot(range(1, len(curves["lookahead_adam_adaptive"]) + 1), curves["lookahead_adam_adaptive"],
                 label="Lookahead(Adam), adaptive alpha")  # fmt: skip
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("validation loss")
    axes[2].set_yscale("log")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def print_grid(heat):
    for name in ("sgd", "lookahead"):
        print(f"\n{name}: final validation loss (rows: momentum, columns: lr)")
        print("        " + "".join(f"{lr:>8}" for lr in heat["learning_rates"]))
        for momentum, row in zip(heat["momenta"], heat[name]):
            print(f"{momentum:>8}" + "".join("     div" if v >= DIVERGED else f"{v:>8.3f}" for v in row))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: threads only add noise
    heat = grid(epochs=args.epochs)
    curves = adam_curves()
    print_grid(heat)
    print(
        f"\nAdam lr=1e-3, final validation loss: {curves['adam'][-1]:.4f}; Lookahead(Adam), alpha 0.5: "
        f"{curves['lookahead_adam'][-1]:.4f}; Lookahead(Adam), adaptive alpha: {curves['lookahead_adam_adaptive'][-1]:.4f}"
    )
    save("robustness", {"grid": heat, "adam": curves}, lambda data, path: plot(data["grid"], data["adam"], path))


if __name__ == "__main__":
    main()
