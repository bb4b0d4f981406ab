"""One process of tests/test_accelerate.py (accelerate allows one Accelerator setup per process, so
the resume runs in a fresh one): `python -m tests.accelerate_worker full|resume DIR`.

full: train both optimizers of tests/frameworks.py for STEPS steps, accelerator.save_state at
SAVE_AT (mid-period); resume: fresh models and optimizers, accelerator.load_state, train the rest.
Each writes DIR/MODE.pt: every optimizer's end state, and (full) whether the prepared optimizer
refused state_dict() inside slow_weights() entered through lookahead_of."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer

from lookahead_fused import lookahead_of

from .frameworks import OPTIMIZERS, SAVE_AT, build_optimizer, end_state

STEPS = 12  # past the sync at 10, ending mid-period


def _batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(8, 6, generator=g), torch.randn(8, 2, generator=g)


def _refuses_inside_slow_weights(prepared) -> bool:
    with lookahead_of(prepared).slow_weights():
        try:
            prepared.state_dict()
        except RuntimeError as error:
            return "inside `with optimizer.slow_weights():`" in str(error)
    return False


def main(mode: str, directory: Path) -> None:
    accelerator = Accelerator(cpu=True)
    runs = {}
    for name in sorted(OPTIMIZERS):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        runs[name] = accelerator.prepare(model, build_optimizer(name, model.parameters()))
    assert all(isinstance(opt, AcceleratedOptimizer) for _, opt in runs.values())
    first = 0
    if mode == "resume":
        accelerator.load_state(str(directory / "state"))
        first = SAVE_AT
    for step in range(first, STEPS):
        if mode == "full" and step == SAVE_AT:
            accelerator.save_state(str(directory / "state"))
        for model, opt in runs.values():
            x, y = _batch(step)
            accelerator.backward(torch.nn.functional.mse_loss(model(x), y))
            opt.step()
            opt.zero_grad()
    result = {name: end_state(opt) for name, (_, opt) in runs.items()}
    if mode == "full":
        result["refused"] = {name: _refuses_inside_slow_weights(opt) for name, (_, opt) in runs.items()}
    torch.save(result, directory / f"{mode}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
