"""The benchmark's own arithmetic: model sizes, bytes per sync, and a tiny run's report."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_sync  # noqa: E402
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
    bench_sync.main(["--device", "cpu", "--models", "resnet50", "--dtypes", "bf16+fp32", "--reps", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert {"date", "device", "torch", "command", "reps", "copy_bandwidth_GBps", "cases"} <= set(report)
    (case,) = report["cases"]
    assert case["bytes_per_sync"] == 25_557_032 * 12
    assert set(case["backends"]) >= {"reference", "foreach"}
    for result in case["backends"].values():
        assert result["ms"] > 0
        assert result["GB/s"] == pytest.approx(case["bytes_per_sync"] / result["ms"] / 1e6)
    assert case["backends"]["reference"]["x_vs_reference"] == pytest.approx(1.0)
    assert "resnet50" in capsys.readouterr().out
