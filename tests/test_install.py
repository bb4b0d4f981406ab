"""setup.py never drops the kernels quietly: a build that cannot see torch, or whose compile fails,
stops with a message that says what to run; LOOKAHEAD_FUSED_BUILD=none asks for pure Python."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_setup(args, tmp_path, code="exec(open('setup.py').read())", **env):
    build = ["--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "temp")] if "build_ext" in args else []
    prelude = "import sys; sys.argv = ['setup.py', *sys.argv[1:]]; "
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args, *build],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_says_what_to_run(output):
    for advice in ("--no-build-isolation", "LOOKAHEAD_FUSED_BUILD=none", "LOOKAHEAD_FUSED_BUILD=cpu"):
        assert advice in output, output


def test_a_build_that_cannot_import_torch_fails_and_says_what_to_run(tmp_path):
    result = run_setup(["build_ext"], tmp_path, code="sys.modules['torch'] = None; exec(open('setup.py').read())")
    assert result.returncode != 0
    assert "cannot build the kernels: torch is not importable here" in result.stderr
    assert_says_what_to_run(result.stderr)


def test_metadata_needs_no_torch(tmp_path):
    result = run_setup(["--name"], tmp_path, code="sys.modules['torch'] = None; exec(open('setup.py').read())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "lookahead_fused"


def test_a_failed_compile_fails_the_install(tmp_path):
    broken = tmp_path / "broken-c++"  # a compiler that answers --version and fails every compile
    broken.write_text('#!/bin/sh\n[ "$1" = --version ] && exec c++ --version\necho "broken compiler" >&2; exit 1\n')
    broken.chmod(0o755)
    result = run_setup(["build_ext"], tmp_path, LOOKAHEAD_FUSED_BUILD="cpu", CXX=str(broken), CC=str(broken))
    assert result.returncode != 0
    assert "building the kernels (cpu) failed" in result.stderr, result.stderr[-3000:]
    assert_says_what_to_run(result.stderr)
    assert not list((tmp_path / "lib").rglob("_C*.so"))


def test_pure_python_when_asked(tmp_path):
    result = run_setup(["build_ext"], tmp_path, code="sys.modules['torch'] = None; exec(open('setup.py').read())",
                       LOOKAHEAD_FUSED_BUILD="none")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "LOOKAHEAD_FUSED_BUILD=none: pure Python, no extension" in result.stderr


@pytest.mark.parametrize("value", ["gpu", "yes"])
def test_an_unknown_build_choice_is_refused(tmp_path, value):
    result = run_setup(["--name"], tmp_path, LOOKAHEAD_FUSED_BUILD=value)
    assert result.returncode != 0
    assert f"LOOKAHEAD_FUSED_BUILD must be auto, cuda, cpu or none, got '{value}'" in result.stderr


@pytest.mark.parametrize("value", ["-Ofast", "1"])
def test_an_unknown_optimisation_level_is_refused(tmp_path, value):
    result = run_setup(["--name"], tmp_path, LOOKAHEAD_FUSED_CXX_OPT=value)
    assert result.returncode != 0
    assert f"LOOKAHEAD_FUSED_CXX_OPT must be -O0, -O1, -O2 or -O3, got '{value}'" in result.stderr


@pytest.mark.parametrize("level", [None, "-O1"])
def test_the_optimisation_level_is_the_last_on_each_compile_line(tmp_path, level):
    log = tmp_path / "compiles.txt"
    recording = tmp_path / "recording-c++"  # answers --version, writes each compile's arguments down, then fails
    recording.write_text(f'#!/bin/sh\n[ "$1" = --version ] && exec c++ --version\necho "$@" >> {log}\nexit 1\n')
    recording.chmod(0o755)
    env = {"LOOKAHEAD_FUSED_BUILD": "cpu", "CXX": str(recording), "CC": str(recording)}
    result = run_setup(["build_ext"], tmp_path, **env, **({"LOOKAHEAD_FUSED_CXX_OPT": level} if level else {}))
    assert result.returncode != 0
    compiles = [line.split() for line in log.read_text().splitlines() if " -c " in f" {line} "]
    assert compiles, result.stderr[-3000:]
    for args in compiles:
        assert [a for a in args if a in ("-O0", "-O1", "-O2", "-O3")][-1] == (level or "-O3"), args
