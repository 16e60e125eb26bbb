"""Version and build information: one version, read from the package metadata."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import fusedrnn


def test_version_is_the_package_metadata_and_the_build_info() -> None:
    assert fusedrnn.__version__ == md.version("fusedrnn")
    assert fusedrnn.build_info()["version"] == fusedrnn.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", fusedrnn.__version__)


def test_build_info_names_compiler_isas_and_cuda() -> None:
    info = fusedrnn.build_info()
    assert set(info) >= {"version", "compiler", "build_type", "isas", "cuda", "cuda_architectures"}
    assert info["compiler"].strip()
    assert "generic" in info["isas"]
    assert fusedrnn.cpu_info()["isa"] in info["isas"]
    try:
        from fusedrnn import _cuda  # noqa: F401  (present only in CUDA-enabled builds)
        built_with_cuda = True
    except ImportError:
        built_with_cuda = False
    assert info["cuda"] is built_with_cuda
    assert bool(list(info["cuda_architectures"])) is built_with_cuda


def test_the_package_ships_its_type_marker() -> None:
    assert (Path(fusedrnn.__file__).parent / "py.typed").is_file()
