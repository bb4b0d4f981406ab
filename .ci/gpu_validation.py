"""The GPU validation as one run within a wall-time budget (run through .ci/gpu; docs/gpu.md says how
to run it and read it).

Phases run in priority order, each with a share of the budget: phase i must end by the start time
plus the shares of phases 0..i, so time a phase leaves unused goes to the phases after it and the
last one ends by the budget. A phase past its end gets SIGINT (pytest still writes its summary),
then SIGKILL after KILL_GRACE_S; everything it wrote stays. Standard library only: it drives the
machine's own python (PYTHON, default python3) and never installs anything.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import targets  # noqa: E402

DEFAULT_BUDGET_S = 480
REHEARSAL_BUDGET_S = 120
KILL_GRACE_S = 10  # from SIGINT to SIGKILL: pytest writes its summary in this time (less in a budget under 200 s)
LEAST_PHASE_S = 3  # a phase given less than this is skipped ("no time left")
MAX_FILES, MAX_FILE_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2  # what the GPU machine can send back
COMPRESS_ABOVE_BYTES = 2**20
ENV_MARKER = "validation-env: "  # the line .ci/gpu_probe.py prints

# Op-level tests: every op of the CUDA kernel and the compiled Triton kernels against the float64
# reference over the test matrix, one launch per sync, the static checks of the built kernels.
KERNEL_TESTS = ["tests/test_op_contract.py", "tests/test_momentum_op.py", "tests/test_step_gate.py",
                "tests/test_lookahead_adamw.py", "tests/test_compact_sync.py", "tests/test_compact_step_gate.py",
                "tests/test_cuda.py", "tests/test_triton.py", "tests/test_triton_aot.py", "tests/test_cuda_static.py",
                "tests/test_opcheck.py", "tests/test_pseudo_gradient.py", "tests/test_compact_momentum_sync.py",
                "tests/test_adamw_delta.py", "tests/test_adamw_delta_momentum.py", "tests/test_int8_momentum.py",
                "tests/test_triton_int8_momentum.py", "tests/test_compact_int8_momentum.py",
                "tests/test_adamw_delta_float_momentum.py", "tests/test_adamw_compact_step.py",
                "tests/test_adamw_int8_momentum_step.py"]  # fmt: skip
# Training-level: a captured CUDA graph of a training step against eager, the documented GPU snippets.
TRAINING_TESTS = ["tests/test_cuda_graphs.py", "tests/test_readme.py", "tests/test_long_run.py"]
GPU_SELECTION = "cuda or triton"  # -k: the tests' GPU parametrisations and the GPU-only files
CUDA_SELECTION = "cuda and not triton"  # the CUDA kernel's first: 16 workers each compiling Triton's kernels are slow
TRITON_SELECTION = "triton"
DURATIONS = "--durations=15"  # the slowest tests, for sizing the phases of the next lease
# The kernel phases run a sample of each test function's cases first and the others after the
# benchmark and the sanitizers (see [NOTE: sampled cases] in tests/conftest.py): on the first lease the
# full selection ran 286 of about 7000 tests, so most test functions never ran.
SAMPLE_SIZE = 2
SAMPLE, OTHERS = f"sample:{SAMPLE_SIZE}", f"others:{SAMPLE_SIZE}"
# The compact slow weights' sync against the exact one (bench/compact_sync.py), after bench.json is
# written; its table goes to bench.log (the files that come back are at most MAX_FILES).
COMPACT_SECONDS_PER_CASE = 4
TRAINING_SELECTION = f"{GPU_SELECTION} or test_long_run"  # the long run takes the GPU whenever there is one
# Under a sanitizer, the broadest single call first (every dtype pair and alignment in one launch), in
# case the time runs out.
SANITIZED_TESTS = ["tests/test_cuda.py", "tests/test_op_contract.py", "tests/test_momentum_op.py",
                   "tests/test_lookahead_adamw.py", "tests/test_step_gate.py", "tests/test_compact_sync.py"]  # fmt: skip
# The profiler's CUDA activities need CUPTI, which a process under compute-sanitizer cannot subscribe to.
SANITIZED_SELECTION = "cuda and not replays_like_eager and not one_launch"
# The sanitizers run the small op matrix (tests/matrix.py) on the CUDA backend alone.
SANITIZER_ENV = "LOOKAHEAD_FUSED_TEST_MATRIX=small LOOKAHEAD_FUSED_TEST_BACKENDS=cuda"


@dataclass(frozen=True)
class Run:
    python: str
    out: Path
    rehearse: bool
    workers: int

    def pytest(self, files, selection, *options, most_workers: int | None = None, cases: str = "") -> str:
        """The pytest command, its workers sharing the cores (OMP_NUM_THREADS): each worker's torch would
        start a thread per core for the tests' float64 references on the CPU (see docs/gpu.md).
        `most_workers` caps the workers of a phase with few tests, which would wait for them to start;
        `cases` samples each test function's cases (see [NOTE: sampled cases] in tests/conftest.py)."""
        workers = min(self.workers, most_workers or self.workers)
        threads = max(1, (os.cpu_count() or 1) // workers)
        sample = [f"LOOKAHEAD_FUSED_TEST_CASES={cases}"] if cases else []
        return " ".join([*sample, f"OMP_NUM_THREADS={threads}", shlex.quote(self.python),
                         "-m pytest -q -rfEs -p no:cacheprovider", f"-n {workers}", *options, *files, "-k",
                         shlex.quote(selection)])  # fmt: skip


@dataclass(frozen=True)
class Phase:
    name: str
    share_s: float  # of DEFAULT_BUDGET_S; scaled to the run's budget
    log: str
    command: Callable[[Run], str | None]  # None: not run in this mode
    gate: bool = False  # the later phases need this one to pass
    what: str = ""


def build(run: Run) -> str:
    probe = f"{shlex.quote(run.python)} .ci/gpu_probe.py"
    if run.rehearse:  # the rehearsal uses the extension .ci/setup-env built
        return probe
    python = shlex.quote(run.python)
    return (f"export TORCH_CUDA_ARCH_LIST=$({python} -c 'import torch; print(\"%d.%d\" % torch.cuda.get_device_capability())') "
            f"MAX_JOBS=$(nproc) LOOKAHEAD_FUSED_BUILD=cuda && echo TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST && "
            f"{{ {python} -m pip install --no-build-isolation --no-deps -e . || "
            f"{{ echo 'pip failed: building in place instead'; {python} setup.py build_ext --inplace; }} }} && {probe}")  # fmt: skip


def bench(run: Run) -> str:
    report = shlex.quote(str(run.out / "bench.json"))
    if run.rehearse:
        return (f"{shlex.quote(run.python)} bench/bench_sync.py --device cpu --models 2000x4096 --dtypes fp32 "
                f"--backends cpu foreach reference --reps 7 --no-overhead --momentum-models --json {report}")  # fmt: skip
    return (f"{shlex.quote(run.python)} bench/bench_sync.py --models gpt2-small 2000x4096 --dtypes fp32 bf16+fp32 "
            f"--seconds-per-case 3 --json {report} && {shlex.quote(run.python)} bench/compact_sync.py "
            f"--models gpt2-small --dtypes fp32 bf16 --budget {COMPACT_SECONDS_PER_CASE}")  # fmt: skip


def sanitizer(tool: str) -> Callable[[Run], str | None]:
    def command(run: Run) -> str | None:
        if run.rehearse:
            return None
        tests = " ".join(SANITIZED_TESTS)
        return (f"echo '== compute-sanitizer --tool {tool}' && {SANITIZER_ENV} {shlex.quote(compute_sanitizer())} --tool {tool} "
                f"--error-exitcode 1 --target-processes all {shlex.quote(run.python)} -m pytest -q -x -p no:cacheprovider "
                f"{tests} -k {shlex.quote(SANITIZED_SELECTION)}")  # fmt: skip

    return command


def compute_sanitizer() -> str:
    """compute-sanitizer on PATH, else the CUDA toolkit's (CUDA_HOME, default /usr/local/cuda)."""
    return shutil.which("compute-sanitizer") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "compute-sanitizer")


def rest_selection() -> str:
    """-k for every test the kernel and training phases did not select, less this validation's own
    (a rehearsal inside the run)."""
    ran = [f"not (({' or '.join(Path(f).stem for f in files)}) and ({selection}))"
           for files, selection in ((KERNEL_TESTS, GPU_SELECTION), (TRAINING_TESTS, TRAINING_SELECTION))]
    return " and ".join([*ran, f"not {Path(__file__).stem}"])


PHASES = [
    Phase("build", 110, "build.log", build, gate=True,
          what="pip install -e . for this GPU's arch alone (TORCH_CUDA_ARCH_LIST from its capability), then the import check"),
    Phase("kernels", 55, "tests.log", lambda run: run.pytest(KERNEL_TESTS, CUDA_SELECTION, "--maxfail=5", DURATIONS,
                                                             cases=SAMPLE),
          what=f"every op of the CUDA kernel against float64, launches, static checks: each test's sample of {SAMPLE_SIZE} cases"),
    Phase("triton", 35, "tests.log", lambda run: run.pytest(KERNEL_TESTS, TRITON_SELECTION, "--maxfail=5", DURATIONS,
                                                            cases=SAMPLE),
          what=f"every op of the compiled Triton kernels against float64, launches, AOT: each test's sample of {SAMPLE_SIZE} cases"),
    Phase("training", 35, "tests.log", lambda run: run.pytest(TRAINING_TESTS, TRAINING_SELECTION, "--maxfail=1",
                                                              most_workers=4),
          what="a captured CUDA graph of a training step against eager, the GPU snippets, the long run"),
    Phase("bench", 85, "bench.log", bench,
          what="bandwidth; the sync on GPT-2 small (124M) and 2000x4096, fp32 and bf16+fp32; every backend; AdamW; "
               "then the compact (bf16+int8) sync against the exact one"),
    Phase("memcheck", 45, "sanitizer.log", sanitizer("memcheck"), what="compute-sanitizer memcheck, small op matrix"),
    Phase("racecheck", 25, "sanitizer.log", sanitizer("racecheck"), what="compute-sanitizer racecheck, small op matrix"),
    Phase("kernels2", 35, "tests.log", lambda run: run.pytest(KERNEL_TESTS, CUDA_SELECTION, "--maxfail=5", DURATIONS,
                                                              cases=OTHERS),
          what="the CUDA kernel's other cases, as far as the time left allows"),
    Phase("triton2", 20, "tests.log", lambda run: run.pytest(KERNEL_TESTS, TRITON_SELECTION, "--maxfail=5", DURATIONS,
                                                             cases=OTHERS),
          what="the compiled Triton kernels' other cases, as far as the time left allows"),
    Phase("rest", 35, "rest.log", lambda run: run.pytest(["tests"], rest_selection(), DURATIONS),
          what="the rest of the suite, as far as the time left allows"),
]  # fmt: skip


@dataclass
class Outcome:
    phase: Phase
    rc: int | None = None  # None: not run
    seconds: float = 0.0
    given_s: float = 0.0
    note: str = ""


def run_phase(command: str, log: Path, timeout_s: float, grace_s: float, env: dict) -> tuple[int, float, int]:
    """Run `command` under bash in its own process group, output appended to `log`; at timeout_s the
    group gets SIGINT, then SIGKILL grace_s later. Returns (rc, seconds, where in `log` its
    output begins); rc 124 on timeout."""
    start = time.monotonic()
    with open(log, "a") as sink:
        begins = sink.tell()
        sink.write(f"$ {command}\n")
        sink.flush()
        process = subprocess.Popen(["bash", "-c", command], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)  # fmt: skip
        try:
            rc = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGINT)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            rc = 124
            sink.write(f"\n{STOPPED} after {timeout_s:.0f} s: the phase's time was spent\n")
    return rc, time.monotonic() - start, begins


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


STOPPED = "[gpu_validation] stopped"
PROGRESS = re.compile(r"^([.sxXFE]+)\s*(\[\s*\d+%\])?$")  # pytest -q's progress lines
PROGRESS_NAMES = {".": "passed", "s": "skipped", "x": "xfailed", "X": "xpassed", "F": "failed", "E": "error"}


def result_line(log: Path, begins: int = 0) -> str:
    """What the phase wrote to `log` from offset `begins`, in one line of at most 100 characters:
    its first failure, else pytest's closing line, else (pytest stopped before its summary) the
    outcomes counted from its progress line, else its last line."""
    with open(log, "rb") as source:
        source.seek(begins)
        text = source.read().decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(STOPPED)]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    closing = [line for line in lines if re.search(r"\b(passed|failed|error|no tests ran)\b.* in [\d.]+s", line)]
    marks = "".join(m.group(1) for line in lines if (m := PROGRESS.match(line)))
    counted = ", ".join(f"{marks.count(mark)} {name}" for mark, name in PROGRESS_NAMES.items() if mark in marks)
    so_far = [f"{counted} so far"] if counted else []
    return (failed or closing[-1:] or so_far or lines[-1:] or [""])[0].strip("= ")[:100]


def probed_env(log: Path) -> dict:
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if line.startswith(ENV_MARKER):
            return json.loads(line.removeprefix(ENV_MARKER))
    return {}


def validate(run: Run, budget_s: float) -> list[Outcome]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    scale = budget_s / DEFAULT_BUDGET_S
    grace_s = min(KILL_GRACE_S, budget_s / 20)
    start = time.monotonic()
    end = start
    outcomes = []
    gate_failed = None
    for phase in PHASES:
        end += phase.share_s * scale
        outcome = Outcome(phase)
        outcomes.append(outcome)
        command = phase.command(run)
        given = end - time.monotonic() - grace_s
        if command is None:
            outcome.note = "skipped: needs a GPU (rehearsal)"
        elif gate_failed:
            outcome.note = f"skipped: {gate_failed} failed"
        elif given < LEAST_PHASE_S:
            outcome.note = f"skipped: {max(given, 0):.0f} s left"
        else:
            print(f"== {phase.name} (at most {given:.0f} s): {phase.what}", file=sys.stderr, flush=True)
            outcome.given_s = given
            outcome.rc, outcome.seconds, begins = run_phase(command, run.out / phase.log, given, grace_s, env)
            outcome.note = ("timed out; " if outcome.rc == 124 else "") + result_line(run.out / phase.log, begins)
            if phase.gate and outcome.rc != 0:
                gate_failed = phase.name
    return outcomes


def fit_files(out: Path) -> list[str]:
    """Compress logs over COMPRESS_ABOVE_BYTES; what still breaks the copy-back limits, as lines."""
    for log in out.rglob("*.log"):
        if log.stat().st_size > COMPRESS_ABOVE_BYTES:
            with open(log, "rb") as source, gzip.open(f"{log}.gz", "wb") as target:
                shutil.copyfileobj(source, target)
            log.unlink()
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [f"{len(files)} files (at most {MAX_FILES} come back)"] if len(files) > MAX_FILES else []
    problems += [f"{p.relative_to(out)}: {p.stat().st_size / 2**20:.1f} MiB (at most 16)" for p in files if p.stat().st_size > MAX_FILE_BYTES]
    problems += [f"{p.relative_to(out)}: too deep" for p in files if len(p.relative_to(out).parts) - 1 > MAX_DEPTH]
    return problems


def summary(run: Run, budget_s: float, outcomes: list[Outcome], wall_s: float) -> str:
    env = probed_env(run.out / "build.log")
    mode = "rehearsal without a GPU" if run.rehearse else "GPU"
    lines = [f"GPU validation ({mode}), {datetime.datetime.now().isoformat(timespec='seconds')}: "
             f"{env.get('device', 'device unknown (the build phase did not report)')}, capability {env.get('capability')}, "
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}, triton {env.get('triton')}",
             f"budget {budget_s:.0f} s, wall {wall_s:.0f} s, {run.workers} pytest workers; logs in {run.out}", "",
             f"{'phase':<10} {'rc':>4} {'seconds':>8} {'given':>6}  result"]  # fmt: skip
    for o in outcomes:
        rc = "-" if o.rc is None else str(o.rc)
        lines.append(f"{o.phase.name:<10} {rc:>4} {o.seconds:>8.0f} {o.given_s:>6.0f}  {o.note}")
    report_path = run.out / "bench.json"
    verdicts = []
    if report_path.exists():
        report = json.loads(report_path.read_text())
        lines += ["", f"figures ({report['device']}, {report_path.name}):", *("  " + h for h in targets.headline(report))]
        verdicts = targets.check(report)
        lines += ["", f"targets: {'target':<34} {'case':<24} {'value':>9}"] + ["  " + v.line() for v in verdicts]
    else:
        lines += ["", "figures: no bench.json (the bench phase did not finish)"]
    problems = fit_files(run.out)
    files = sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*") if p.is_file())
    lines += ["", f"files ({len(files) + 1} with summary.txt): {' '.join(files)} summary.txt"]
    lines += [f"  NOT COPIED BACK: {p}" for p in problems]
    failed = [o.phase.name for o in outcomes if o.rc not in (None, 0)]
    missed = sum(not v.met for v in verdicts)
    verdict = "PASS" if not failed and not missed and verdicts and not run.rehearse else "NOT PASSED"
    lines.append(f"verdict: {verdict} (phases not passed: {', '.join(failed) or 'none'}; targets not met: {missed} of {len(verdicts)})")
    return "\n".join(lines)


def dry_run(run: Run, budget_s: float) -> None:
    print("prerequisites:")
    for tool in (run.python, "nvcc", compute_sanitizer(), "nvidia-smi"):
        print(f"  {os.path.basename(tool):<20} {shutil.which(tool) or 'MISSING'}")
    probe = "import torch, triton, xdist; print('torch', torch.__version__, 'triton', triton.__version__, 'pytest-xdist', xdist.__version__, 'cuda available:', torch.cuda.is_available())"  # fmt: skip
    found = subprocess.run([run.python, "-c", probe], capture_output=True, text=True, check=False)
    print("  " + (found.stdout.strip() or "MISSING: " + found.stderr.strip().splitlines()[-1]))
    scale = budget_s / DEFAULT_BUDGET_S
    print(f"plan ({'rehearsal' if run.rehearse else 'GPU'}; logs, bench.json and bench.png in OUTDIR; summary last):")
    for phase in PHASES:
        command = phase.command(run)
        print(f"  {phase.name:<10} {phase.share_s * scale:>5.0f} s  {phase.what}")
        print(f"  {'':<10} {'':>7}  $ {command if command else '(skipped in a rehearsal: needs a GPU)'}")
    print(f"total budget: {sum(p.share_s for p in PHASES) * scale:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", nargs="?", type=Path, help="where the logs, bench.json, bench.png and summary.txt go")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds of wall time for the whole run (default {DEFAULT_BUDGET_S}; {REHEARSAL_BUDGET_S} with --rehearse)")
    parser.add_argument("--rehearse", action="store_true", help="the same plumbing without a GPU: GPU-only phases skipped")
    parser.add_argument("--dry-run", action="store_true", help="check the prerequisites and print the plan; runs nothing")
    args = parser.parse_args(argv)  # fmt: skip
    budget_s = args.budget or (REHEARSAL_BUDGET_S if args.rehearse else DEFAULT_BUDGET_S)
    python = os.environ.get("PYTHON") or ("python3" if not args.rehearse or not (ROOT / ".venv/bin/python").exists() else str(ROOT / ".venv/bin/python"))
    workers = min(os.cpu_count() or 1, 16)
    if args.dry_run:
        dry_run(Run(python, Path("OUTDIR"), args.rehearse, workers), budget_s)
        return 0
    if args.outdir is None:
        parser.error("OUTDIR is required (or --dry-run)")
    if budget_s <= 0:
        parser.error(f"--budget must be positive, got {budget_s:g}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    if any(args.outdir.iterdir()):
        parser.error(f"OUTDIR {args.outdir} is not empty: the run's files must be the only ones there")
    run = Run(python, args.outdir.resolve(), args.rehearse, workers)
    start = time.monotonic()
    outcomes = validate(run, budget_s)
    text = summary(run, budget_s, outcomes, time.monotonic() - start)
    (run.out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if all(o.rc in (None, 0) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
