"""The targets the fused sync is held to on a GPU, checked against a bench_sync.py report (its JSON).

Each target is one row of TARGETS; `check` evaluates every row on every case it applies to and
returns one verdict per (target, case). A figure the report lacks (a CPU run counts no launches, a
backend that was not timed) is reported as missing, never as met. Standard library only: the GPU
validation (.ci/gpu_validation.py) reads a report with it before or without importing torch.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

SMALL_TENSORS_CASE = "2000x4096"


@dataclass(frozen=True)
class Target:
    name: str
    compare: str  # ">=", "<=" or "=="
    bound: float
    figure: Callable[[dict], float | None]  # the case's figure, or None where the report lacks it
    applies: Callable[[dict], bool] = lambda case: True


@dataclass(frozen=True)
class Verdict:
    target: str
    case: str
    value: float | None
    compare: str
    bound: float

    @property
    def met(self) -> bool:
        return self.value is not None and COMPARE[self.compare](self.value, self.bound)

    def line(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.3g}"
        state = "ok" if self.met else ("MISSING" if self.value is None else "MISSED")
        return f"{self.target:<34} {self.case:<24} {value:>9} {self.compare} {self.bound:<6g} {state}"


COMPARE = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def _median(case: dict, backend: str, key: str) -> float | None:
    entry = case["backends"].get(backend, {}).get(key)
    return None if entry is None else entry["median"]


def _launches(backend: str) -> Callable[[dict], float | None]:
    return lambda case: case["backends"].get(backend, {}).get("launches_per_sync")


def _triton_over_cuda(case: dict) -> float | None:
    triton, cuda = (case["backends"].get(name, {}).get("time") for name in ("triton", "cuda"))
    return None if triton is None or cuda is None else triton["median_ms"] / cuda["median_ms"]


TARGETS = [
    Target("cuda: % of the memory limit", ">=", 90, lambda case: _median(case, "cuda", "pct_of_bandwidth")),
    Target("cuda: x foreach", ">=", 1.2, lambda case: _median(case, "cuda", "x_vs_foreach")),
    Target("cuda: x per-tensor loop", ">=", 100, lambda case: _median(case, "cuda", "x_vs_reference"),
           applies=lambda case: case["model"] == SMALL_TENSORS_CASE),
    Target("cuda: launches per sync", "==", 1, _launches("cuda")),
    Target("triton: launches per sync", "==", 1, _launches("triton")),
    Target("triton time / cuda time", "<=", 1.10, _triton_over_cuda),
]  # fmt: skip


def check(report: dict) -> list[Verdict]:
    """One verdict per target and case of the report that the target applies to."""
    return [
        Verdict(target.name, f"{case['model']} {case['dtypes']}", target.figure(case), target.compare, target.bound)
        for target in TARGETS
        for case in report["cases"]
        if target.applies(case)
    ]


def headline(report: dict) -> list[str]:
    """The figures read beside the targets: the measured bandwidth and LookaheadAdamW's step."""
    bandwidth = report["memory_bandwidth_GBps"]
    lines = [f"memory bandwidth (faster of copy_ and in-place, read+write): {bandwidth['median_GBps']:.0f} GB/s "
             f"[{bandwidth['p10_GBps']:.0f}-{bandwidth['p90_GBps']:.0f}]"]  # fmt: skip
    fused = report.get("lookahead_adamw_step")
    if fused:
        for name, key in (("LookaheadAdamW", "lookahead_adamw"), ("Lookahead(AdamW)", "lookahead")):
            overhead = fused[f"{key}_overhead_pct"]
            lines.append(f"{name} whole-step overhead over {fused['adamw']} at k={fused['k']}: "
                         f"{overhead['median']:.1f} % [{overhead['p10']:.1f}-{overhead['p90']:.1f}] "
                         f"(byte floor {fused[key + '_floor_pct']:.1f} %)")  # fmt: skip
    return lines
