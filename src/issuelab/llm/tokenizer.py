"""The tokenizer calls the prompt encoder makes, served by the `tokenizers` library directly.

Answering with a run needs only these few calls; loading them this way skips importing
transformers (about 3 s on a small CPU), which is most of a one-shot CLI or GitHub Action start
with the llama.cpp backend. Tests check it gives the same ids as transformers' tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


class FastTokenizer:
    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}

        def special(name: str) -> int | None:
            token = config.get(name)
            if isinstance(token, dict):  # older configs store {"content": ...}
                token = token.get("content")
            return self._tokenizer.token_to_id(token) if isinstance(token, str) else None

        self.bos_token_id = special("bos_token")
        self.eos_token_id = special("eos_token")
        self.pad_token_id = special("pad_token")
        self.unk_token_id = special("unk_token")

    def __call__(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> dict:
        self._tokenizer.encode_special_tokens = split_special_tokens
        return {"input_ids": self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        return self.unk_token_id if found is None else found

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
