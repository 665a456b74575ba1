"""The llama.cpp backend (optional extra `llamacpp`): the Q4_K_M base GGUF plus the run's adapter
as a GGUF LoRA file, decoded with the same label grammar as the transformers backend.

The adapter is written with the `gguf` package (no llama.cpp checkout needed): tensors
`blk.N.<weight>.weight.lora_a` / `.lora_b` from PEFT's lora_A / lora_B, and `adapter.lora.alpha`
set so that llama.cpp's alpha / r equals PEFT's scale (alpha / sqrt(r) with rsLoRA).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import Issue
from ..errors import IssuelabError
from .decoding import LabelDecoder
from .encoding import PromptEncoder

PEFT_PREFIX = "base_model.model."


def export_adapter_gguf(adapter_dir: Path, out_path: Path, arch: str = "gemma3") -> Path:
    """Writes a PEFT LoRA adapter (safetensors) as a llama.cpp GGUF LoRA file; returns its path."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    layers = [int(m.group(1)) for key in tensors if (m := re.search(r"\.layers\.(\d+)\.", key))]
    arch_id = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch), None)
    if arch_id is None:
        raise IssuelabError(f"llama.cpp export: unknown architecture '{arch}'")
    names = gguf.get_tensor_name_map(arch_id, max(layers, default=0) + 1)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scale * rank)  # llama.cpp scales by alpha / r
    for key in sorted(tensors):
        match = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key.removeprefix(PEFT_PREFIX))
        if match is None:
            raise IssuelabError(f"llama.cpp export: unexpected adapter tensor '{key}'")
        target = names.get_name(match.group(1))
        if target is None:
            raise IssuelabError(f"llama.cpp export: no GGUF name for '{match.group(1)}' in {arch}")
        writer.add_tensor(f"{target}.weight.lora_{match.group(2).lower()}", tensors[key].astype(np.float32))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out_path


class LlamaCppDecoder(LabelDecoder):
    """llama.cpp backend: the quantized base with the adapter applied at load, one issue at a time.

    Token ids come from the same tokenizer as training (the GGUF's own vocabulary), so the label
    pieces and the grammar are shared with the transformers backend."""

    def __init__(self, gguf_path: Path, adapter_gguf: Path | None, encoder: PromptEncoder,
                 max_new_tokens: int = 64, n_ctx: int = 2048, n_threads: int | None = None):  # fmt: skip
        super().__init__(encoder, max_new_tokens)
        try:
            import logging

            from llama_cpp import Llama

            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # adapter placement notes are noise
        except ImportError:
            raise IssuelabError("the llama.cpp backend needs the 'llamacpp' extra: pip install 'issuelab[llamacpp]'") from None
        kwargs = dict(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), verbose=False)
        if adapter_gguf is not None:
            kwargs["lora_path"] = str(adapter_gguf)
        try:  # keep every position of the sliding-window layers, so the cache can go back to the prefix
            self.llm = Llama(swa_full=True, **kwargs)
        except TypeError:
            self.llm = Llama(**kwargs)
        self._prefix_ready = False

    def _begin(self, issue: Issue) -> None:
        prefix = self.encoder.prefix_ids
        if not self._prefix_ready:  # the same for every issue: computed once
            self.llm.reset()
            self.llm.eval(prefix)
            self._prefix_ready = True
        self.llm.n_tokens = len(prefix)  # eval() drops the cache past n_tokens: back to the prefix
        self.llm.eval(self.encoder.issue_ids(issue))

    def _advance(self, token: int) -> None:
        self.llm.eval([token])

    def _logits(self, tokens: Sequence[int] | None = None) -> np.ndarray:
        # The last evaluated token's logits, read from the context (eval() keeps none without logits_all).
        row = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        return (row if tokens is None else row[list(tokens)]).astype(np.float64)
