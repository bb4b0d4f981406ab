"""Build script: the lookahead_fused._C extension with torch.utils.cpp_extension.

    pip install --no-build-isolation .      (or -e .; the build must see the torch it runs with)

With nvcc found (PATH or CUDA_HOME) it builds the CUDA kernels too, also on a machine without a
GPU; otherwise a CPU-only extension. LOOKAHEAD_FUSED_BUILD=cuda|cpu|none forces a choice (none:
pure Python). TORCH_CUDA_ARCH_LIST overrides the default archs "8.0;9.0+PTX". Package metadata is in
pyproject.toml. The extension is optional: if it cannot be built the package still installs and
runs on its pure-PyTorch backends (lookahead_fused.unavailable_backends() says why).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


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
    except ImportError:
        log("torch is not importable in the build environment: pure Python only "
            "(install with pip install --no-build-isolation . to build the kernels)")
        return [], {}

    sources = ["csrc/module.cpp", "csrc/contract.cpp", "csrc/plan.cpp", "csrc/cpu/sync_cpu.cpp"]
    cxx_flags = ["-O3"]
    if kind == "cuda":
        archs = os.environ["TORCH_CUDA_ARCH_LIST"]
        defines = ["-DLOOKAHEAD_FUSED_WITH_CUDA", f'-DLOOKAHEAD_FUSED_CUDA_ARCHS="{archs}"']
        ext = cpp_extension.CUDAExtension(
            "lookahead_fused._C",
            sources + ["csrc/cuda/sync_cuda.cu"],
            extra_compile_args={"cxx": cxx_flags + defines, "nvcc": ["-O3", "-lineinfo"] + defines},
            optional=True,
        )
        log(f"building the CUDA extension (CUDA_HOME={os.environ['CUDA_HOME']}, archs {archs})")
    else:
        ext = cpp_extension.CppExtension("lookahead_fused._C", sources, extra_compile_args=cxx_flags, optional=True)
        log("building the CPU-only extension (no nvcc found)")
    return [ext], {"build_ext": optional_build_ext(cpp_extension.BuildExtension)}


def optional_build_ext(base):
    """BuildExtension that skips a failing optional extension with a message (setuptools' own
    `optional` misses the errors that torch's ninja build raises)."""

    class OptionalBuildExtension(base):
        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001  (any build failure)
                if not ext.optional or os.environ.get("LOOKAHEAD_FUSED_BUILD", "auto") != "auto":
                    raise
                log(f"building {ext.name} failed, installing without it (pure-PyTorch backends only): {error}")

    return OptionalBuildExtension.with_options(use_ninja=bool(shutil.which("ninja")))


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
