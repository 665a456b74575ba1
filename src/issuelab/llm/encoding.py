"""Issues to token ids in the Gemma turn format, and labels to the answer the model learns.

    <bos><start_of_turn>user\\n{prompt prefix}{issue part}<end_of_turn>\\n<start_of_turn>model\\n{answer}<end_of_turn>

The answer is the gold labels as a CSV line in label-set order, built from fixed token pieces:
the first label's tokens, then ", label" for each next one. Training and constrained decoding use
the same pieces, so the model learns exactly the sequences the decoder allows.

The prefix (everything before the issue's title or body) is tokenized on its own, so its KV cache
can be computed once and reused; issue text is tokenized with special tokens split, so an issue
that contains "<end_of_turn>" cannot end the turn. Long issues are cut to `max_prompt_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data import Issue
from ..prompt import render_prompt_parts

USER_TURN = "<start_of_turn>user\n"
MODEL_TURN = "<end_of_turn>\n<start_of_turn>model\n"
END_OF_TURN = "<end_of_turn>"


class PromptEncoder:
    def __init__(
        self,
        tokenizer,
        template: str,
        labels: Sequence[tuple[str, str]],
        max_prompt_tokens: int = 1024,
        describe_labels: bool = True,
    ):
        self.tokenizer = tokenizer
        self.template = template
        self.labels = list(labels)
        self.describe_labels = describe_labels
        prefix, _ = render_prompt_parts(template, labels, "", "", describe_labels)
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.prefix_ids = bos + self._encode(USER_TURN + prefix)
        self.suffix_ids = self._encode(MODEL_TURN)
        self.end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.end_id is None or self.end_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {END_OF_TURN} token; a Gemma-style tokenizer is needed")
        names = [name for name, _ in labels]
        self.first_pieces = [self._encode(name) for name in names]
        self.next_pieces = [self._encode(", " + name) for name in names]
        budget = max_prompt_tokens - len(self.prefix_ids) - len(self.suffix_ids)
        if budget < 16:
            raise ValueError(
                f"max_prompt_tokens {max_prompt_tokens} leaves {budget} tokens for the issue after the "
                f"{len(self.prefix_ids)}-token prompt prefix; raise max_prompt_tokens"
            )
        self.issue_budget = budget

    def _encode(self, text: str, split_special: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"]

    def issue_ids(self, issue: Issue) -> list[int]:
        """The issue part of the prompt and the model-turn opener; follows prefix_ids."""
        _, rest = render_prompt_parts(self.template, self.labels, issue.title, issue.body, self.describe_labels)
        return self._encode(rest, split_special=True)[: self.issue_budget] + self.suffix_ids

    def prompt_ids(self, issue: Issue) -> list[int]:
        return self.prefix_ids + self.issue_ids(issue)

    def answer_ids(self, labels: Sequence[str]) -> list[int]:
        """Gold labels in label-set order as token pieces, then <end_of_turn>."""
        index = {name: k for k, (name, _) in enumerate(self.labels)}
        ids: list[int] = []
        for position, k in enumerate(sorted(index[label] for label in labels)):
            ids += self.first_pieces[k] if position == 0 else self.next_pieces[k]
        return ids + [self.end_id]

    def decode_answer(self, ids: Sequence[int]) -> str:
        ids = [t for t in ids if t != self.end_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True)
