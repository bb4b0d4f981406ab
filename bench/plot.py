"""The benchmark's figure: achieved GB/s and speed-up over "foreach" against parameter count."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"fp32": "o", "bf16": "s", "bf16+fp32": "^"}


def write_plot(report: dict, path) -> None:
    fig, (bandwidth_ax, speedup_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    backends = sorted({name for case in report["cases"] for name in case["backends"]})
    for i, backend in enumerate(backends):
        color = f"C{i}"
        for dtypes, marker in MARKERS.items():
            cases = sorted(
                (c for c in report["cases"] if c["dtypes"] == dtypes and backend in c["backends"]),
                key=lambda c: c["params"],
            )
            if not cases:
                continue
            x = [c["params"] for c in cases]
            label = f"{backend} {dtypes}"
            bandwidth_ax.plot(x, [c["backends"][backend]["GB/s"] for c in cases], marker=marker, color=color, label=label)
            speedup_ax.plot(x, [c["backends"][backend].get("x_vs_foreach", float("nan")) for c in cases],
                            marker=marker, color=color, label=label)  # fmt: skip
    bandwidth_ax.axhline(report["copy_bandwidth_GBps"], color="grey", linestyle="--", label="measured bandwidth")
    for ax, title in ((bandwidth_ax, "achieved GB/s (bytes the sync must move)"), (speedup_ax, "speed-up over foreach")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    speedup_ax.set_yscale("log")
    speedup_ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Lookahead sync, {report['device']}, {report['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
