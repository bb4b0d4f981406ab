"""The benchmark's own arithmetic: model sizes, bytes per sync, and a tiny run's report."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_sync  # noqa: E402
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


def test_tiny_run_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    bench_sync.main(["--device", "cpu", "--models", "resnet50", "--dtypes", "bf16+fp32", "--reps", "1", "--no-overhead",
                     "--json", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert {"date", "device", "torch", "command", "reps", "copy_bandwidth_GBps", "cases", "step_overhead"} <= set(report)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (case,) = report["cases"]
    assert case["bytes_per_sync"] == 25_557_032 * 12
    assert set(case["backends"]) >= {"reference", "foreach"}
    for result in case["backends"].values():
        assert result["ms"] > 0
        assert result["GB/s"] == pytest.approx(case["bytes_per_sync"] / result["ms"] / 1e6)
    assert case["backends"]["reference"]["x_vs_reference"] == pytest.approx(1.0)
    assert case["backends"]["reference"]["launches_per_sync"] is None  # none to count on a CPU
    assert "resnet50" in capsys.readouterr().out


def test_step_overhead_rows_and_floor():
    rows = step_overhead.measure([(64, 32), (64,)], torch.device("cpu"), k=5, reps=2)
    assert [r["inner"] for r in rows][0] == "AdamW foreach"
    assert {r["lookahead"] for r in rows} == {"host branch", "capturable"}
    for r in rows:
        assert r["floor_pct"] == pytest.approx(100 * 16 / (5 * 28))
        assert r["k_steps_ms"] > 0 and r["k_steps_with_lookahead_ms"] > 0
        expected = 100 * (r["k_steps_with_lookahead_ms"] - r["k_steps_ms"]) / r["k_steps_ms"]
        assert r["overhead_pct"] == pytest.approx(expected)
