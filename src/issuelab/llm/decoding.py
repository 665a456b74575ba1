"""Decoding constrained to the label set, with per-label scores, from a reused prompt-prefix cache.

The answer grammar: label pieces in label-set order ("bug" then ", security" ...), then
<end_of_turn>. Each label can only follow labels before it in the set, so an output can never
hold a duplicate, a label outside the set, or anything else; it ends right after a label.

Per-label scores come from the model's token probabilities restricted to what the grammar allows:
at each point where the next label is chosen, a label's score is the probability of the path that
leads to it (the product of the restricted token probabilities since the last label, up to the
token that singles it out). A label keeps the highest score it gets along the greedy path; when
the model ends the answer, one more step past the separator scores the labels it did not reach.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data import Issue
from .encoding import PromptEncoder


@dataclass(frozen=True)
class Hypothesis:
    emitted: tuple[int, ...]  # label indices completed so far
    partial: tuple[int, ...]  # tokens of the label being spelled


class LabelGrammar:
    """A small nondeterministic automaton over token ids; states are sets of hypotheses."""

    def __init__(self, first_pieces: Sequence[Sequence[int]], next_pieces: Sequence[Sequence[int]], end_id: int, allow_empty: bool = False):
        self.first = [tuple(p) for p in first_pieces]
        self.next = [tuple(p) for p in next_pieces]
        self.end_id = end_id
        self.allow_empty = allow_empty

    def start(self) -> frozenset[Hypothesis]:
        return frozenset([Hypothesis((), ())])

    def _candidates(self, h: Hypothesis):
        last = h.emitted[-1] if h.emitted else -1
        pieces = self.next if h.emitted else self.first
        n = len(h.partial)
        for j in range(last + 1, len(pieces)):
            seq = pieces[j]
            if len(seq) > n and seq[:n] == h.partial:
                yield j, seq

    def options(self, state: frozenset[Hypothesis]) -> dict[int, set[int]]:
        """Allowed next tokens, each with the labels it keeps reachable (END maps to an empty set)."""
        allowed: dict[int, set[int]] = {}
        for h in state:
            for j, seq in self._candidates(h):
                allowed.setdefault(seq[len(h.partial)], set()).add(j)
            if not h.partial and (h.emitted or self.allow_empty):
                allowed.setdefault(self.end_id, set())
        return allowed

    def advance(self, state: frozenset[Hypothesis], token: int) -> frozenset[Hypothesis]:
        out = set()
        for h in state:
            for j, seq in self._candidates(h):
                if seq[len(h.partial)] != token:
                    continue
                grown = h.partial + (token,)
                out.add(Hypothesis(h.emitted + (j,), ()) if grown == seq else Hypothesis(h.emitted, grown))
        return frozenset(out)

    @staticmethod
    def finished(state: frozenset[Hypothesis]) -> tuple[int, ...]:
        done = [h.emitted for h in state if not h.partial]
        return max(done, key=len) if done else ()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class LabelDecoder:
    """Greedy decoding of one issue at a time (the CPU case), constrained or not.

    A backend implements three steps: `_begin` (run the prompt, reusing the prefix's cache),
    `_advance` (feed one token) and `_logits` (next-token logits, of some tokens or all)."""

    def __init__(self, encoder: PromptEncoder, max_new_tokens: int = 64):
        self.encoder = encoder
        self.grammar = LabelGrammar(encoder.first_pieces, encoder.next_pieces, encoder.end_id)
        self.max_new_tokens = max_new_tokens

    def _begin(self, issue: Issue) -> None:
        raise NotImplementedError

    def _advance(self, token: int) -> None:
        raise NotImplementedError

    def _logits(self, tokens: Sequence[int] | None = None) -> np.ndarray:
        raise NotImplementedError

    def constrained(self, issue: Issue) -> tuple[list[int], np.ndarray]:
        """Returns (label indices in order, per-label scores)."""
        scores = np.zeros(len(self.encoder.labels))
        self._begin(issue)
        state, reach = self.grammar.start(), 1.0
        for _ in range(self.max_new_tokens):
            options = self.grammar.options(state)
            tokens = list(options)
            probs = _softmax(self._logits(tokens))
            for token, p in zip(tokens, probs):
                if len(options[token]) == 1:
                    (j,) = options[token]
                    scores[j] = max(scores[j], reach * p)
            best = int(np.argmax(probs))
            token = tokens[best]
            if token == self.grammar.end_id:
                self._score_unreached(state, options, tokens, probs, scores)
                break
            state = self.grammar.advance(state, token)
            reach = 1.0 if any(not h.partial for h in state) else reach * probs[best]
            self._advance(token)
        return list(self.grammar.finished(state)), scores

    def _score_unreached(self, state, options, tokens, probs, scores) -> None:
        """The model chose to end; look one token past the likeliest separator to score the rest."""
        rest = [(p, t) for t, p in zip(tokens, probs) if t != self.grammar.end_id and len(options[t]) > 1]
        if not rest:
            return
        p_sep, sep = max(rest)
        self._advance(sep)
        after = self.grammar.options(self.grammar.advance(state, sep))
        tokens = list(after)
        for token, p in zip(tokens, _softmax(self._logits(tokens))):
            for j in after[token]:  # labels sharing this token share its probability
                scores[j] = max(scores[j], p_sep * p)

    def unconstrained(self, issue: Issue) -> str:
        """Plain greedy generation, as the seed ran its models: the raw text, valid or not."""
        self._begin(issue)
        stop = {self.encoder.end_id, self.encoder.tokenizer.eos_token_id}
        generated: list[int] = []
        for _ in range(self.max_new_tokens):
            token = int(np.argmax(self._logits()))
            if token in stop:
                break
            generated.append(token)
            self._advance(token)
        return self.encoder.decode_answer(generated)


class TorchDecoder(LabelDecoder):
    """transformers backend. Constrained steps compute logits only for the few tokens the grammar
    allows: the output projection over a 262k-token vocabulary would otherwise be most of a step."""

    def __init__(self, model, encoder: PromptEncoder, max_new_tokens: int = 64):
        super().__init__(encoder, max_new_tokens)
        self.model = model
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel while training
        self.body = causal_lm.get_decoder()
        self.head = causal_lm.get_output_embeddings()
        self.softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
        self._prefix_cache = None
        self._cache = self._hidden = None

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _forward(self, ids: Sequence[int], cache):
        """Runs tokens through the transformer body; returns the cache and the last hidden state."""
        import torch

        with torch.inference_mode():
            out = self.body(input_ids=torch.tensor([list(ids)], device=self.device), past_key_values=cache, use_cache=True)
        return out.past_key_values, out.last_hidden_state[0, -1]

    def _begin(self, issue: Issue) -> None:
        if self._prefix_cache is None:  # the same for every issue: computed once
            self._prefix_cache, _ = self._forward(self.encoder.prefix_ids, None)
        self._cache, self._hidden = self._forward(self.encoder.issue_ids(issue), copy.deepcopy(self._prefix_cache))

    def _advance(self, token: int) -> None:
        self._cache, self._hidden = self._forward([token], self._cache)

    def _logits(self, tokens: Sequence[int] | None = None) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if tokens is None:
                logits = self.head(self._hidden)
            else:
                logits = self.head.weight[list(tokens)] @ self._hidden
                if self.head.bias is not None:
                    logits = logits + self.head.bias[list(tokens)]
            logits = logits.float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.cpu().numpy().astype(np.float64)
