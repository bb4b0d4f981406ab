"""The benchmark's own arithmetic: model sizes, bytes per sync, and a tiny run's report."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import adamw_step  # noqa: E402
import bench_sync  # noqa: E402
import compact_sync  # noqa: E402
import replicas  # noqa: E402
import state_bytes  # noqa: E402
import timing  # noqa: E402
import step_overhead  # noqa: E402
from model_shapes import MODELS  # noqa: E402


@pytest.mark.parametrize(
    "model,params,tensors",
    [  # torchvision resnet50 and Hugging Face gpt2 as published; the 1.3B decoder counted by hand
        ("resnet50", 25_557_032, 161),
        ("gpt2-small", 124_439_808, 148),
        ("decoder-1.3b", 1_315_723_264, 292),
        ("2000x4096", 8_192_000, 2000),
    ],
)
def test_model_shapes_match_published_sizes(model, params, tensors):
    shapes = MODELS[model]()
    assert sum(math.prod(s) for s in shapes) == params
    assert len(shapes) == tensors


def test_bytes_per_sync_follow_the_design():
    shapes = [(10, 3), (5,)]
    assert bench_sync.sync_bytes(shapes, torch.float32, torch.float32) == 35 * 16
    assert bench_sync.sync_bytes(shapes, torch.bfloat16, torch.float32) == 35 * 12
    assert bench_sync.sync_bytes(shapes, torch.bfloat16, torch.bfloat16) == 35 * 8


# Lookahead's own state per parameter in each mode of bench/state_bytes.py, as docs/design.md counts it:
# 4 B for a float32 slow weight, 2 for a bfloat16 one, 3 for bf16+int8, and as much again for outer momentum
# (4 beside bf16+int8, whose values are float32; 2 with momentum_dtype=torch.bfloat16; with "int8" 1 B a code and a 4 B scale per block of 256, here one
# block for each of the two params' 136 elements; int8-delta the same blocks for the slow weight, beside an
# outer momentum in int8 blocks, float32 or bfloat16).
INT8_BLOCKS_BYTES = 1 + 4 * 2 / 136
INT8_SNOO_BYTES = 4 + INT8_BLOCKS_BYTES
LOOKAHEAD_BYTES = [4, 8, 6, INT8_SNOO_BYTES, 3, 4, 2, 3, 3 + 4, 3 + 2, 3 + INT8_BLOCKS_BYTES, 4, 3, 8, 6, INT8_SNOO_BYTES,
                   3 + 2, 3 + INT8_BLOCKS_BYTES, INT8_BLOCKS_BYTES, INT8_BLOCKS_BYTES, 2 * INT8_BLOCKS_BYTES,
                   INT8_BLOCKS_BYTES + 4, INT8_BLOCKS_BYTES + 2]


def test_state_bytes_count_each_modes_state():
    assert len(LOOKAHEAD_BYTES) == len(state_bytes.MODES)
    for (label, dtype, make), expected in zip(state_bytes.MODES, LOOKAHEAD_BYTES):
        figures = state_bytes.count(make, dtype, shapes=[(16, 8), (8,)])
        assert figures["lookahead"] == expected, label
        moments = 2 * torch.empty((), dtype=dtype).element_size()  # AdamW's exp_avg and exp_avg_sq
        assert moments <= figures["inner"] < moments + 1, label  # + the step counts


def assert_is_summary(figure, unit=""):
    suffix = f"_{unit}" if unit else ""
    low, p10, median, p90, high = (figure[k + suffix] for k in ("min", "p10", "median", "p90", "max"))
    assert low <= p10 <= median <= p90 <= high
    assert low <= figure["median_ci95_low" + suffix] <= median <= figure["median_ci95_high" + suffix] <= high
    assert figure["reps"] >= 1
    assert figure["spread_pct"] == pytest.approx(100 * (p90 - p10) / abs(median))


def test_summary_of_known_values():
    figure = timing.summary([4.0, 1.0, 3.0, 2.0, 5.0], scale=1e3, unit="ms")
    assert figure == {"median_ms": 3000.0, "min_ms": 1000.0, "max_ms": 5000.0, "p10_ms": pytest.approx(1400.0),
                      "p90_ms": pytest.approx(4600.0), "reps": 5, "spread_pct": pytest.approx(100 * 3200 / 3000),
                      "median_ci95_low_ms": 1000.0, "median_ci95_high_ms": 5000.0}  # fmt: skip


@pytest.mark.parametrize(  # the published table of order statistics (1-based) bounding the median at 95 %
    "n,low,high", [(6, 1, 6), (10, 2, 9), (20, 6, 15), (50, 18, 33), (100, 40, 61), (1000, 469, 532)]
)
def test_median_interval_matches_the_binomial_table(n, low, high):
    j = timing.median_ci95_rank(n)
    assert (j + 1, n - j) == (low, high)
    figure = timing.summary(range(1, n + 1))
    assert (figure["median_ci95_low"], figure["median_ci95_high"]) == (low, high)


def test_rounds_interleave_in_rotating_order():
    calls = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = timing.interleaved_rounds(variants, torch.device("cpu"), rounds=3, warmup=1)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(times) for name, times in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_tiny_run_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    bench_sync.main(["--device", "cpu", "--models", "resnet50", "--dtypes", "bf16+fp32", "--reps", "2", "--no-overhead",
                     "--json", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert {"date", "device", "torch", "command", "memory_bandwidth_GBps", "cases", "step_overhead", "warnings"} <= set(report)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (case,) = report["cases"]
    assert case["bytes_per_sync"] == 25_557_032 * 12
    assert_is_summary(case["floor"], "ms")
    assert_is_summary(case["memory_bandwidth"], "GBps")
    assert set(case["backends"]) >= {"reference", "foreach"}
    for result in case["backends"].values():
        assert_is_summary(result["time"], "ms")
        assert result["time"]["reps"] == 2
        assert result["GB/s"] == pytest.approx(case["bytes_per_sync"] / result["time"]["median_ms"] / 1e6)
        for figure in ("pct_of_bandwidth", "x_vs_reference", "x_vs_foreach"):
            assert_is_summary(result[figure])
    reference = case["backends"]["reference"]["x_vs_reference"]
    assert reference["min"] == reference["max"] == 1.0  # each round's ratio to itself
    assert case["backends"]["reference"]["launches_per_sync"] is None  # none to count on a CPU
    assert "resnet50" in capsys.readouterr().out


def test_step_overhead_rows_and_floors():
    rows = step_overhead.measure([(64, 32), (64,)], torch.device("cpu"), k=5, rounds=3)
    assert [r["inner"] for r in rows][0] == "AdamW foreach"
    modes = {"host branch", "capturable", "LookaheadAdamW host branch", "LookaheadAdamW capturable",
             "LookaheadAdamW int8-delta", "LookaheadAdamW SNOO", "LookaheadAdamW SNOO int8-delta + int8 momentum",
             "LookaheadAdamW SNOO int8-delta + bf16 momentum", "LookaheadAdamW SNOO int8-delta + fp32 momentum"}  # fmt: skip
    assert {r["lookahead"] for r in rows} == modes
    int8_block_bytes = 2 * (1 + 4 / 256)  # codes and a scale per 256, read and written
    for r in rows:
        fused = r["lookahead"].startswith("LookaheadAdamW")  # the sync's 8 bytes inside AdamW's pass, not 16
        # int8-delta: its offset's codes and scales read and written at each of the k steps; SNOO: the
        # momentum's read and write at the sync too, exact (8 bytes), int8 blocks, bfloat16 or float32
        sync_bytes = {"LookaheadAdamW int8-delta": 5 * int8_block_bytes, "LookaheadAdamW SNOO": 16,
                      "LookaheadAdamW SNOO int8-delta + int8 momentum": 6 * int8_block_bytes,
                      "LookaheadAdamW SNOO int8-delta + bf16 momentum": 5 * int8_block_bytes + 4,
                      "LookaheadAdamW SNOO int8-delta + fp32 momentum": 5 * int8_block_bytes + 8}.get(
            r["lookahead"], 8 if fused else 16)  # fmt: skip
        assert r["floor_pct"] == pytest.approx(100 * sync_bytes / (5 * 28))
        for figure, unit in (("k_steps", "ms"), ("k_steps_with_lookahead", "ms"), ("overhead_pct", ""), ("time_floor_pct", "")):
            assert_is_summary(r[figure], unit)
            assert r[figure]["reps"] == 3


def test_adamw_step_composes_overheads_against_both_floors():
    r = adamw_step.measure([(64, 32), (64,)], torch.device("cpu"), rounds=3)
    assert set(r["step_ms"]) == {"adamw", "lookahead_adamw", "lookahead_adamw_sync", "lookahead_sync", "compact",
                                 "compact_sync"}  # fmt: skip
    for figure in r["step_ms"].values():
        assert_is_summary(figure, "ms")
        assert figure["reps"] == 3
    assert r["lookahead_adamw_floor_pct"] == pytest.approx(100 * 8 / (5 * 28))
    assert r["lookahead_floor_pct"] == pytest.approx(100 * 16 / (5 * 28))
    assert r["compact_floor_pct"] == pytest.approx(100 * 6 / (5 * 28))
    for key in ("lookahead_adamw_overhead_pct", "lookahead_overhead_pct", "lookahead_adamw_time_floor_pct",
                "compact_overhead_pct", "compact_time_floor_pct"):
        assert_is_summary(r[key])


def test_compact_sync_prints_every_variant_of_each_case(monkeypatch, capsys, tmp_path):
    """The command the GPU validation's bench phase runs (.ci/gpu_validation.py), on a tiny model."""
    monkeypatch.setitem(compact_sync.MODELS, "tiny", lambda: [(64, 32), (64,)])
    report = tmp_path / "compact.json"
    monkeypatch.setattr(sys, "argv", ["compact_sync.py", "--models", "tiny", "--dtypes", "fp32", "bf16", "--budget", "0",
                                      "--json", str(report)])  # fmt: skip
    compact_sync.main()
    printed = capsys.readouterr().out.splitlines()
    cases = json.loads(report.read_text())
    assert [(c["model"], c["dtypes"]) for c in cases] == [("tiny", "fp32"), ("tiny", "bf16")]
    for case in cases:
        assert set(case["variants"]) == set(compact_sync.SLOW_BYTES)
        for name, r in case["variants"].items():
            fast_bytes = 4 if case["dtypes"] == "fp32" else 2
            assert r["time"]["reps"] == 5 and r["bytes"] == 64 * 33 * 2 * (fast_bytes + compact_sync.SLOW_BYTES[name])
            assert any(line.split()[:3] == ["tiny", case["dtypes"], name] for line in printed), name


def test_warnings_name_noise_and_figures_below_their_floor():
    steady = {"median": 1.0, "p10": 1.0, "p90": 1.0, "spread_pct": 0.0}
    case = {"model": "m", "dtypes": "fp32", "memory_bandwidth": {**steady, "spread_pct": 25.0},
            "backends": {"cpu": {"time": {"spread_pct": 30.0}, "pct_of_bandwidth": {"median": 120.0}}}}  # fmt: skip
    row = {"inner": "AdamW fused", "lookahead": "host branch", "floor_pct": 11.4,
           "overhead_pct": {"median": 3.0, "spread_pct": 5.0}, "time_floor_pct": {"median": 5.0}}  # fmt: skip
    found = bench_sync.warnings_for([case], [row])
    assert len(found) == 4
    assert "bandwidth varied by 25 %" in found[0]
    assert "time spread 30 %" in found[1]
    assert "faster than the memory limit (120 %)" in found[2]
    assert "below the time floor 5.0 %" in found[3]


def test_replicas_bench_counts_the_wire_exactly_and_both_outer_steps_agree():
    r = replicas.run({"tiny": [(4096,)] * 3}, world=2, rounds=2)["models"]["tiny"]
    assert r["same_result"], "ours and the per-parameter DiLoCo loop computed different outer steps"
    step_check = 4 * 8  # the step counter and k, as int64, with their negations
    int8_blocks = 3 * 4096 + 4 * (3 * 4096 // 256)  # a code per element, a float32 scale per block of 256
    assert r["wire_bytes_per_sync"] == {"None": 3 * 4096 * 4 + step_check, "torch.bfloat16": 3 * 4096 * 2 + step_check,
                                        "int8": int8_blocks + step_check}  # fmt: skip
    assert r["ddp_bytes_per_step"] == 3 * 4096 * 4
    # streaming: three equal params in four fragments by bytes are fragments 0, 2 and 3 (fragment 1 sends nothing)
    assert r["streaming"]["1"] == {"most_in_a_step": 3 * 4096 * 4 + step_check, "steps_sending": 1,
                                   "per_k_steps": 3 * 4096 * 4 + step_check}  # fmt: skip
    assert r["streaming"]["4"] == {"most_in_a_step": 4096 * 4 + step_check, "steps_sending": 3,
                                   "per_k_steps": 3 * (4096 * 4 + step_check)}  # fmt: skip
    assert_is_summary(r["speedup"])

