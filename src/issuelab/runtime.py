"""Where the code runs: the torch device, the process's rank under a distributed launch, and the
library versions a run records. Written once here, for every engine and stage."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from ._version import __version__

LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "peft")


def device() -> str:
    """"cuda" when a GPU is there, else "cpu" (imports torch)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_main_process() -> bool:
    """False in the non-zero ranks of a distributed launch (accelerate, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "issuelab": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
