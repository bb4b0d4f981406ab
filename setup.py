"""Build script. Package metadata lives in pyproject.toml.

Pure Python for now: the C++/CUDA extension (csrc/) is added here when it lands, built with
torch.utils.cpp_extension. Install with `pip install --no-build-isolation .` so that the build
sees the torch it will run against.
"""

from setuptools import setup

setup()
