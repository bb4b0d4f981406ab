"""The GPU validation's plumbing, proven without a GPU (docs/gpu.md): the plan and its budget, a
rehearsal with a tiny budget (phases, timeouts, the files written, the summary last), and the
targets read from a benchmark report."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import sampled

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "gpu"
REHEARSAL_BUDGET_S = 60
# Past the budget: the last phase's SIGKILL grace, the summary, and bash and Python starting on a loaded machine.
OVERRUN_S = 25


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


validation = load(ROOT / ".ci" / "gpu_validation.py")
targets = load(ROOT / "bench" / "targets.py")


def gpu(*args, timeout):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable})  # fmt: skip


def test_the_plan_fits_eight_minutes_and_names_every_phase():
    done = gpu("--dry-run", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "total budget: 480 s" in done.stdout.splitlines()
    for phase in validation.PHASES:
        assert re.search(rf"^  {phase.name}\s+\d+ s", done.stdout, flags=re.M), phase.name
    assert sum(p.share_s for p in validation.PHASES) == validation.DEFAULT_BUDGET_S == 480


def test_the_logs_and_results_fit_what_a_gpu_machine_sends_back():
    files = {p.log for p in validation.PHASES} | {"bench.json", "bench.png", "summary.txt"}
    assert len(files) <= validation.MAX_FILES, sorted(files)


def collected(*args, cases: str = "") -> list[str]:
    env = {**os.environ, "LOOKAHEAD_FUSED_TEST_CASES": cases}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize("count, per_test, expected", [
    (1, 2, {0}), (5, 1, {0}), (5, 2, {0, 4}), (5, 3, {0, 2, 4}), (3, 5, {0, 1, 2}), (10, 4, {0, 3, 6, 9}),
])  # fmt: skip
def test_a_sample_spreads_its_cases_from_the_first_to_the_last(count, per_test, expected):
    assert sampled(count, per_test) == expected


def test_a_sample_and_its_others_split_the_selection_and_the_sample_runs_every_test_function():
    selection = ["tests/test_op_contract.py", "tests/test_int8_momentum.py", "-k", "cpu and not triton"]
    everything = collected(*selection)
    sample, others = collected(*selection, cases="sample:2"), collected(*selection, cases="others:2")
    assert sorted(sample + others) == sorted(everything) and not set(sample) & set(others)
    functions = {test.split("[")[0] for test in everything}
    assert {test.split("[")[0] for test in sample} == functions
    assert len(sample) <= 2 * len(functions) < len(everything)


def test_the_kernel_phases_run_each_sample_before_the_others_after_the_benchmark():
    order = [phase.name for phase in validation.PHASES]
    commands = {phase.name: phase.command(validation.Run("python3", Path("out"), False, 16)) for phase in validation.PHASES}
    for first, then in (("kernels", "kernels2"), ("triton", "triton2")):
        assert f"LOOKAHEAD_FUSED_TEST_CASES={validation.SAMPLE} " in commands[first]
        assert f"LOOKAHEAD_FUSED_TEST_CASES={validation.OTHERS} " in commands[then]
        assert commands[first].split("-n 16 ")[1] == commands[then].split("-n 16 ")[1], "the same tests and selection"
        assert order.index(first) < order.index("bench") < order.index("racecheck") < order.index(then)


def test_the_rest_of_the_suite_is_what_the_first_phases_did_not_select():
    rest = validation.rest_selection()
    for path in validation.KERNEL_TESTS + validation.TRAINING_TESTS:
        assert (ROOT / path).is_file(), path
        assert Path(path).stem in rest
    assert rest.endswith(f"and not {Path(__file__).stem.removeprefix('test_')}"), "the rest would rehearse inside the run"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "out"
    start = time.monotonic()
    done = gpu("--rehearse", str(out), "--budget", str(REHEARSAL_BUDGET_S), timeout=REHEARSAL_BUDGET_S + 120)
    return done, out, time.monotonic() - start


def test_a_rehearsal_ends_within_its_budget(rehearsal):
    done, _, wall = rehearsal
    assert wall <= REHEARSAL_BUDGET_S + OVERRUN_S, f"{wall:.0f} s for a {REHEARSAL_BUDGET_S} s budget\n{done.stdout}"


def test_a_rehearsal_runs_every_phase_or_says_why_not(rehearsal):
    done, out, _ = rehearsal
    table = done.stdout.split("phase ", 1)[1]
    rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(r"^(\w+)\s+(-|\d+)\s+\d+\s+\d+  (.*)$", table, flags=re.M)}
    assert set(rows) == {p.name for p in validation.PHASES}, done.stdout
    assert rows["build"][0] == "0", f"the import check failed:\n{(out / 'build.log').read_text()}"
    for name in ("memcheck", "racecheck"):
        assert rows[name] == ("-", "skipped: needs a GPU (rehearsal)")
    for name, (rc, result) in rows.items():
        # 0: passed; 124: stopped at its time, as a tiny budget must; '-': skipped with the reason
        assert rc in ("0", "124", "-"), f"{name}: rc {rc}: {result}\n{done.stdout}"
        assert (rc == "124") == result.startswith("timed out"), (name, rc, result)
        if rc == "-":
            assert result.startswith("skipped: "), (name, result)


def test_a_rehearsal_writes_what_comes_back_and_the_summary_last(rehearsal):
    done, out, _ = rehearsal
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= validation.MAX_FILES
    assert all(p.stat().st_size <= validation.MAX_FILE_BYTES and p.parent == out for p in files)
    summary = (out / "summary.txt").read_text()
    assert done.stdout.rstrip().endswith(summary.rstrip())
    assert summary.rstrip().splitlines()[-1].startswith("verdict: NOT PASSED"), "a rehearsal never passes as a GPU run"
    assert "(rehearsal without a GPU)" in summary.splitlines()[0] and "device unknown" not in summary, "the probe's line was not read"


def test_a_second_run_into_the_same_outdir_is_refused(rehearsal):
    _, out, _ = rehearsal
    done = gpu("--rehearse", str(out), timeout=60)
    assert done.returncode == 2 and "is not empty" in done.stderr


def case(model, dtypes, **backends):
    return {"model": model, "dtypes": dtypes, "backends": backends}


def backend(ms, pct=None, x_foreach=None, x_reference=None, launches=None):
    entry = {"time": {"median_ms": ms}, "launches_per_sync": launches}
    for key, value in (("pct_of_bandwidth", pct), ("x_vs_foreach", x_foreach), ("x_vs_reference", x_reference)):
        if value is not None:
            entry[key] = {"median": value}
    return entry


def test_targets_are_met_missed_or_missing_never_assumed():
    report = {"cases": [
        case("gpt2-small", "fp32", cuda=backend(1.0, pct=93, x_foreach=1.5, launches=1), triton=backend(1.08, launches=1)),
        case("2000x4096", "bf16+fp32", cuda=backend(1.0, pct=85, x_foreach=1.19, x_reference=150, launches=2),
             triton=backend(1.2, launches=1)),
        case("2000x4096", "fp32", cuda=backend(1.0, pct=95, x_foreach=2.0, x_reference=99)),
    ]}  # fmt: skip
    verdicts = {(v.target, v.case): v for v in targets.check(report)}
    assert verdicts[("cuda: % of the memory limit", "gpt2-small fp32")].met
    assert not verdicts[("cuda: % of the memory limit", "2000x4096 bf16+fp32")].met
    assert not verdicts[("cuda: x foreach", "2000x4096 bf16+fp32")].met
    assert verdicts[("cuda: x per-tensor loop", "2000x4096 bf16+fp32")].met
    assert not verdicts[("cuda: x per-tensor loop", "2000x4096 fp32")].met
    assert ("cuda: x per-tensor loop", "gpt2-small fp32") not in verdicts
    assert not verdicts[("cuda: launches per sync", "2000x4096 bf16+fp32")].met
    assert verdicts[("triton time / cuda time", "gpt2-small fp32")].met
    assert not verdicts[("triton time / cuda time", "2000x4096 bf16+fp32")].met
    missing = verdicts[("triton time / cuda time", "2000x4096 fp32")]
    assert missing.value is None and not missing.met and missing.line().endswith("MISSING")
    assert not verdicts[("cuda: launches per sync", "2000x4096 fp32")].met
    assert json.dumps([v.line() for v in verdicts.values()])  # every verdict prints
