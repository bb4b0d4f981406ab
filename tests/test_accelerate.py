"""Lookahead under accelerate (the real package): save_state mid-period, load_state in a fresh
process, and the run ends bit for bit as the uninterrupted one; lookahead_of reaches through the
prepared optimizer. The runs are tests/accelerate_worker.py processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .frameworks import OPTIMIZERS, assert_same_end_state

pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parent.parent


def _worker(mode: str, directory: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "tests.accelerate_worker", mode, str(directory)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{mode} worker failed:\n{done.stdout}\n{done.stderr}"
    return torch.load(directory / f"{mode}.pt")


def test_a_resume_in_a_fresh_process_is_bitwise(tmp_path):
    uninterrupted = _worker("full", tmp_path)
    resumed = _worker("resume", tmp_path)
    assert uninterrupted["refused"] == {name: True for name in OPTIMIZERS}
    for name in OPTIMIZERS:
        assert_same_end_state(resumed[name], uninterrupted[name])
