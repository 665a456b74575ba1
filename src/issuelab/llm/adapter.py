"""The base LLM's LoRA adapter: the options the `lora` and `head` engines share, and the check that
the 'lora' extra (torch, transformers, peft) is installed."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import IssuelabError

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class AdapterOptions:
    """The base model and its LoRA adapter: shared by the lora and head engines."""

    base_model: str = "gemma3-270m"  # or a local Hugging Face model directory
    rank: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = TARGET_MODULES
    rslora: bool = True
    weight_decay: float = 0.0
    batch_size: int = 8  # examples per optimizer step
    micro_batch_size: int = 0  # 0: 8 on a GPU, 1 on CPU (no padding waste); gradients accumulate

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.micro_batch_size < 0 or self.rank < 1:
            raise ValueError("batch_size and rank must be >= 1, micro_batch_size >= 0")
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of micro_batch_size {self.micro_batch_size}")


def require_lora_extra() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise IssuelabError("the lora engine needs the 'lora' extra: pip install 'issuelab[lora]'") from None


def micro_batch(options: AdapterOptions, device: str) -> int:
    """Examples per forward pass: `micro_batch_size`, else 8 on a GPU and 1 on a CPU (no padding work)."""
    return options.micro_batch_size or (min(8, options.batch_size) if device == "cuda" else 1)


def lora_config(options: AdapterOptions, **extra):
    """PEFT's LoraConfig for these options (extra: e.g. task_type)."""
    from peft import LoraConfig

    return LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                      target_modules=list(options.target_modules), use_rslora=options.rslora, **extra)  # fmt: skip
