"""The base model zero-shot: the seed's "base model" column, the baseline a fine-tuned run must beat."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..data import Issue
from .adapter import require_lora_extra
from .base_model import DEFAULT_BASE_MODEL, load_base_model, resolve_base_model


def base_model_outputs(
    template: str, labels: Sequence[tuple[str, str]], issues: Sequence[Issue], base_model: str = DEFAULT_BASE_MODEL,
    max_new_tokens: int = 64,
) -> list[str]:
    """Zero-shot, unconstrained answers of a base model to the prompt `template` over `labels` (name,
    description): the seed's 'base model' column."""
    require_lora_extra()
    from tqdm.auto import tqdm

    from .decoding import TorchDecoder
    from .encoding import PromptEncoder

    base = resolve_base_model(base_model)
    model, tokenizer = load_base_model(base.path)
    encoder = PromptEncoder(tokenizer, template, labels)
    decoder = TorchDecoder(model.eval(), encoder, max_new_tokens)
    return [decoder.unconstrained(issue) for issue in tqdm(issues, desc="base model", unit="issue", file=sys.stderr, disable=None)]
