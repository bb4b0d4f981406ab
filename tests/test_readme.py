"""The README's code blocks marked `<!-- tested: NAME -->` run as written: in one process, in two
gloo processes (the distributed ones), or on a GPU only."""

import re
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from . import distributed_workers

README = Path(__file__).resolve().parent.parent / "README.md"
DISTRIBUTED = {"ddp", "fsdp2"}
GPU_ONLY = {"cuda-graphs"}


def snippets() -> dict[str, str]:
    blocks = re.findall(r"<!-- tested: ([\w-]+) -->\n```python\n(.*?)```", README.read_text(), flags=re.S)
    return dict(blocks)


def test_every_integration_has_a_tested_snippet():
    assert {"use", "lookahead-adamw", "from-timm", "amp", "compile", "cuda-graphs", "ddp", "fsdp2"} <= set(snippets())


@pytest.mark.parametrize("name", sorted(snippets()))
def test_snippet_runs(name, tmp_path, monkeypatch):
    code = snippets()[name]
    if name in GPU_ONLY and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.chdir(tmp_path)
    if name in DISTRIBUTED:
        init_file = str(tmp_path / "init")
        mp.spawn(distributed_workers.snippet_worker, args=(2, init_file, str(tmp_path), code), nprocs=2, join=True)
    else:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
