"""The code blocks marked `<!-- tested: NAME -->` in README.md and docs/*.md run as written: in one
process, in two gloo processes (the distributed ones), in a fresh process (accelerate allows one
Accelerator setup per process), or on a GPU only."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from . import distributed_workers

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DISTRIBUTED = {"ddp", "fsdp2", "replicas"}
FRESH_PROCESS = {"accelerate"}
GPU_ONLY = {"cuda-graphs"}
FRAMEWORKS = {"transformers": "transformers", "accelerate": "accelerate", "lightning": "lightning"}  # name -> package


def snippets() -> dict[str, tuple[Path, str]]:
    """NAME -> (the page, the code); a name is used once over all pages."""
    found = {}
    for page in PAGES:
        for name, code in re.findall(r"<!-- tested: ([\w-]+) -->\n```python\n(.*?)```", page.read_text(), flags=re.S):
            assert name not in found, f"snippet {name!r} in {page.name} and {found[name][0].name}"
            found[name] = (page, code)
    return found


def test_every_integration_has_a_tested_snippet():
    required = {"use", "lookahead-adamw", "from-timm", "amp", "compile", "cuda-graphs", "ddp", "fsdp2", "replicas", *FRAMEWORKS}
    assert required <= set(snippets())


def test_the_readme_keeps_one_example_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert [name for name, (page, _) in snippets().items() if page.name == "README.md"] == ["use"]
    for page in [*PAGES[1:], ROOT / "docs" / "gpu.md"]:
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    assert "bash bench/run.sh" in readme and "bash .ci/run" in readme


@pytest.mark.parametrize("name", sorted(snippets()))
def test_snippet_runs(name, tmp_path, monkeypatch):
    page, code = snippets()[name]
    if name in GPU_ONLY and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if name in FRAMEWORKS:
        pytest.importorskip(FRAMEWORKS[name])
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    if name in DISTRIBUTED:
        init_file = str(tmp_path / "init")
        mp.spawn(distributed_workers.snippet_worker, args=(2, init_file, str(tmp_path), code), nprocs=2, join=True)
    elif name in FRESH_PROCESS:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{page.name}: {name}:\n{done.stderr}"
    else:
        exec(compile(code, str(page), "exec"), {"__name__": "__readme__"})
