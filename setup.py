"""Build script: the lookahead_fused._C extension with torch.utils.cpp_extension.

    pip install --no-build-isolation .      (or -e .; the build must see the torch it runs with)

With nvcc found (PATH or CUDA_HOME) it builds the CUDA kernels too, also on a machine without a
GPU; otherwise a CPU-only extension. LOOKAHEAD_FUSED_BUILD=cuda|cpu|none forces a choice (none:
pure Python, no kernels). TORCH_CUDA_ARCH_LIST overrides the default archs "8.0;9.0+PTX".
LOOKAHEAD_FUSED_CXX_OPT (-O0 to -O3, default -O3) sets the C++ compiler's optimisation level, for
.ci/sanitize-cpu's instrumented build; the CUDA kernels are built at -O3 whatever it says. Package
metadata is in pyproject.toml.

The kernels are the point of this package, so an install never drops them quietly: unless
LOOKAHEAD_FUSED_BUILD=none asks for pure Python, a build that cannot see torch (pip's default
build isolation) or whose compile fails stops with a message that says why and what to run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CPU_KERNEL = "the CPU kernel (baseline x86-64, plus AVX2/FMA/F16C chosen at run time)"
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"
HOW_TO_INSTALL = (
    "To build the kernels: install torch first, then `pip install --no-build-isolation .` (pip's default "
    "build isolation hides the installed torch from this build); the CUDA kernels also need the CUDA "
    "toolkit (nvcc on PATH or CUDA_HOME), LOOKAHEAD_FUSED_BUILD=cpu builds the CPU kernel alone. "
    "LOOKAHEAD_FUSED_BUILD=none installs pure Python without any kernel (slower)."
)
TORCH_NOT_IMPORTABLE = "lookahead_fused: cannot build the kernels: torch is not importable here ({error}). " + HOW_TO_INSTALL
BUILD_FAILED = "lookahead_fused: building the kernels ({kind}) failed: {error} (the compiler's output is above). " + HOW_TO_INSTALL


def log(message):
    print(f"lookahead_fused setup: {message}", file=sys.stderr)


def is_toolkit_root(path):
    return path is not None and (Path(path) / "include" / "cuda_runtime.h").is_file()


def find_cuda_home():
    """The toolkit root (the folder whose include/ holds cuda_runtime.h): CUDA_HOME if set, else the
    real path of nvcc, else the TOP that nvcc itself reports (nvcc on PATH may be a wrapper script)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    beside = Path(os.path.realpath(nvcc)).parent.parent
    if is_toolkit_root(beside):
        return str(beside)
    dryrun = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                            capture_output=True, text=True, check=False)
    for line in dryrun.stderr.splitlines():
        if line.startswith("#$ TOP="):
            top = os.path.realpath(line.removeprefix("#$ TOP=").strip())
            if is_toolkit_root(top):
                return top
    return None


def extension_kind():
    forced = os.environ.get("LOOKAHEAD_FUSED_BUILD", "auto").lower()
    if forced not in ("auto", "cuda", "cpu", "none"):
        raise SystemExit(f"LOOKAHEAD_FUSED_BUILD must be auto, cuda, cpu or none, got {forced!r}")
    if forced != "auto":
        return forced
    return "cuda" if find_cuda_home() else "cpu"


def cxx_optimisation():
    level = os.environ.get("LOOKAHEAD_FUSED_CXX_OPT", "-O3")
    if level not in ("-O0", "-O1", "-O2", "-O3"):
        raise SystemExit(f"LOOKAHEAD_FUSED_CXX_OPT must be -O0, -O1, -O2 or -O3, got {level!r}")
    return level


def extensions():
    kind = extension_kind()
    if kind == "none":
        log("LOOKAHEAD_FUSED_BUILD=none: pure Python, no extension")
        return [], {}
    if kind == "cuda":
        cuda_home = find_cuda_home()
        if not cuda_home:
            raise SystemExit("LOOKAHEAD_FUSED_BUILD=cuda but no CUDA toolkit was found (set CUDA_HOME or PATH)")
        os.environ["CUDA_HOME"] = cuda_home  # cpp_extension reads it when imported
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    try:
        from torch.utils import cpp_extension
    except ImportError as error:  # fail when the wheel is built, not when pip asks for metadata or an sdist
        return [Extension("lookahead_fused._C", sources=[])], {"build_ext": refusing_build_ext(TORCH_NOT_IMPORTABLE.format(error=error))}

    sources = ["csrc/module.cpp", "csrc/ops.cpp", "csrc/held_sync.cpp", "csrc/contract.cpp", "csrc/plan.cpp", "csrc/chunking.cpp", "csrc/cpu/sync_cpu.cpp",
               "csrc/cpu/int8_momentum_cpu.cpp", "csrc/cpu/adamw_delta_cpu.cpp"]
    # at::parallel_for is an OpenMP pragma in our code (see [NOTE: OpenMP] in csrc/cpu/sync_cpu.cpp)
    openmp = ["-fopenmp"]
    # -fno-math-errno: the AdamW loop's square root vectorises only when it need not set errno
    # (see [NOTE: CPU vectorisation] in csrc/cpu/sync_cpu.cpp)
    cxx_flags = [cxx_optimisation(), "-fno-math-errno", *openmp]
    if kind == "cuda":
        archs = os.environ["TORCH_CUDA_ARCH_LIST"]
        defines = ["-DLOOKAHEAD_FUSED_WITH_CUDA", f'-DLOOKAHEAD_FUSED_CUDA_ARCHS="{archs}"']
        ext = cpp_extension.CUDAExtension(
            "lookahead_fused._C",
            sources + ["csrc/cuda/capture.cpp", "csrc/cuda/sync_cuda.cu", "csrc/cuda/int8_momentum_cuda.cu",
                       "csrc/cuda/adamw_delta_cuda.cu", "csrc/cuda/adamw_int8_momentum_cuda.cu"],
            extra_compile_args={"cxx": cxx_flags + defines, "nvcc": ["-O3", "-lineinfo"] + defines},
            extra_link_args=openmp,
        )
        built = f"{CPU_KERNEL} and the CUDA kernels for archs {archs} (CUDA_HOME={os.environ['CUDA_HOME']})"
    else:
        ext = cpp_extension.CppExtension("lookahead_fused._C", sources, extra_compile_args=cxx_flags, extra_link_args=openmp)
        forced = os.environ.get("LOOKAHEAD_FUSED_BUILD", "auto").lower() == "cpu"
        why = "LOOKAHEAD_FUSED_BUILD=cpu" if forced else "no CUDA toolkit found"
        built = f"{CPU_KERNEL} only ({why})"
    log(f"building {ext.name} ({kind}): {built}; about two minutes on two cores")
    return [ext], {"build_ext": loud_build_ext(cpp_extension.BuildExtension, kind, built)}


def loud_build_ext(base, kind, built):
    """BuildExtension that stops the install with BUILD_FAILED when the compile fails, and says what it
    built when it succeeds."""

    class LoudBuildExtension(base):
        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as error:  # noqa: BLE001  (any build failure: compiler check, ninja, linker)
                raise SystemExit(BUILD_FAILED.format(kind=kind, error=error)) from error
            log(f"built lookahead_fused._C: {built}")

    return LoudBuildExtension.with_options(use_ninja=bool(shutil.which("ninja")))


def refusing_build_ext(message):
    class RefusingBuildExtension(build_ext):
        def run(self):
            raise SystemExit(message)

    return RefusingBuildExtension


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
