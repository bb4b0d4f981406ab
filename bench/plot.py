"""The benchmark's figure: how close each backend comes to the memory limit, how much faster it is
than the pure-Python versions, and what Lookahead adds to a whole training step. Bars are medians
over the interleaved rounds; error bars span p10-p90."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _case_label(case: dict) -> str:
    return f"{case['model']}\n{case['dtypes']}\n{case['params'] / 1e6:.1f}M params"


def _grouped_bars(ax, cases: list[dict], backends: list[str], colors: dict[str, str], figure_of) -> None:
    """One group of bars per case, one bar per backend; figure_of(result) is a summary or None."""
    width = 0.8 / len(backends)
    x = np.arange(len(cases))
    for i, backend in enumerate(backends):
        figures = [figure_of(c["backends"][backend]) if backend in c["backends"] else None for c in cases]
        shown = [(xi, f) for xi, f in zip(x, figures) if f is not None]
        if not shown:
            continue
        positions = [xi + (i - (len(backends) - 1) / 2) * width for xi, _ in shown]
        medians = np.array([f["median"] for _, f in shown])
        errors = np.array([[f["median"] - f["p10"] for _, f in shown], [f["p90"] - f["median"] for _, f in shown]])
        ax.bar(positions, medians, width, yerr=errors, capsize=2, color=colors[backend], label=backend)
    ax.set_xticks(x, [_case_label(c) for c in cases], fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _overhead_panel(ax, rows: list[dict]) -> None:
    labels = [
        f"LookaheadAdamW\n{r['lookahead'].removeprefix('LookaheadAdamW ')}\n(vs {r['inner']})"
        if r["lookahead"].startswith("LookaheadAdamW")
        else f"{r['inner']}\n+ Lookahead\n{r['lookahead']}"
        for r in rows
    ]
    x = np.arange(len(rows))
    medians = np.array([r["overhead_pct"]["median"] for r in rows])
    errors = np.array([medians - [r["overhead_pct"]["p10"] for r in rows], [r["overhead_pct"]["p90"] for r in rows] - medians])
    ax.bar(x, medians, 0.6, yerr=errors, capsize=3, color="C0", label="measured overhead")
    ax.scatter(x, [r["floor_pct"] for r in rows], marker="_", s=900, color="black", zorder=3,
               label="floor by bytes (sync bytes / k AdamW steps at the memory limit: 11.4 %, 5.7 % fused)")  # fmt: skip
    ax.scatter(x, [r["time_floor_pct"]["median"] for r in rows], marker="_", s=900, color="C3", zorder=3,
               label="floor by time (sync bytes at measured bandwidth / measured AdamW steps)")  # fmt: skip
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("overhead over AdamW alone, %")
    ax.set_ylim(top=1.5 * max(r["overhead_pct"]["p90"] for r in rows))  # room for the legend
    ax.set_title(f"Whole training step: what Lookahead adds (k={rows[0]['k']}, {rows[0]['params'] / 1e6:.1f}M fp32 params)",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def write_plot(report: dict, path) -> None:
    cases = report["cases"]
    backends = list(dict.fromkeys(name for case in cases for name in case["backends"]))
    colors = {backend: f"C{i}" for i, backend in enumerate(backends)}
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    limit_ax, overhead_ax, reference_ax, foreach_ax = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]

    _grouped_bars(limit_ax, cases, backends, colors, lambda r: r["pct_of_bandwidth"])
    limit_ax.axhline(100, color="black", linestyle="--", label="memory limit (measured in the same rounds)")
    limit_ax.set_ylabel("% of the memory limit (higher is better)")
    limit_ax.set_title("One sync: bytes it must move / time, as % of the measured bandwidth", fontsize=10)
    limit_ax.set_ylim(0, 1.25 * max(100, limit_ax.get_ylim()[1]))
    limit_ax.legend(fontsize=7, ncol=2, loc="upper left")

    for ax, base, title in (
        (reference_ax, "reference", 'Speed-up over "reference" (a per-tensor Python loop)'),
        (foreach_ax, "foreach", 'Speed-up over "foreach" (torch._foreach_lerp_ + _foreach_copy_)'),
    ):
        others = [b for b in backends if b != base]
        _grouped_bars(ax, cases, others, colors, lambda r, key=f"x_vs_{base}": r.get(key))
        ax.axhline(1, color="black", linestyle="--", label=f"as fast as {base}")
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
        ax.set_ylabel(f"time of {base} / time of the backend (log)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)

    if report["step_overhead"]:
        _overhead_panel(overhead_ax, report["step_overhead"])
    else:
        overhead_ax.set_axis_off()
        overhead_ax.text(0.5, 0.5, "whole-step overhead not measured (--no-overhead)", ha="center", va="center")
    fig.suptitle(f"Lookahead sync, {report['device']}, torch {report['torch']}, {report['date']}\n{report['command']}\n"
                 "bars: median over interleaved rounds; error bars: p10-p90", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
