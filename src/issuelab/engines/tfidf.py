"""`tfidf`: word and character n-gram TF-IDF, one-vs-rest logistic regression.

Features are computed by this module (not scikit-learn's vectorizers) so that prediction needs
only numpy: loading a run and labeling one issue takes milliseconds, with no pickle. scikit-learn
is imported only to fit the regressions.

Each block (words, characters) is TF-IDF with sublinear tf and smooth idf, L2-normalised on its
own, as scikit-learn's TfidfVectorizer(sublinear_tf=True) in a FeatureUnion would give.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import Issue, write_json
from ..metrics import gold_matrix
from ..options import options_from_json
from . import BaseEngine, EngineInfo, Task
from .linear_heads import fit_logistic_heads

_WORD_RE = re.compile(r"(?u)\b\w\w+\b")


@dataclass
class TfidfOptions:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)  # within word boundaries (scikit-learn's char_wb)
    min_df: int = 2  # drop n-grams seen in fewer training issues
    max_features: int = 300_000  # per block, most frequent first
    max_chars: int = 6000  # title + body truncated: long logs add time, not signal
    title_repeats: int = 2  # the title is the densest signal; repeating it weights it up
    C: float = 10.0  # inverse L2 regularisation strength of each logistic regression
    class_weight: str = "balanced"  # "balanced" or "none"
    label_documents: bool = True  # each label's name and description is one more training issue (Task.label_issues)

    def __post_init__(self) -> None:
        for name in ("word_ngrams", "char_ngrams"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max, got [{lo}, {hi}]")
        if self.class_weight not in ("balanced", "none"):
            raise ValueError(f"class_weight must be \"balanced\" or \"none\", got {self.class_weight!r}")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")


class _Block:
    """One TF-IDF block: a vocabulary, its idf weights, and the n-gram extraction."""

    def __init__(self, kind: str, ngrams: tuple[int, int], vocabulary: list[str], idf: np.ndarray):
        self.kind, self.ngrams = kind, ngrams
        self.vocabulary, self.idf = vocabulary, idf
        self.index = {term: i for i, term in enumerate(vocabulary)}
        self._word_cache: dict[str, list[int]] = {}  # char block: word -> its n-gram indices

    @staticmethod
    def terms(kind: str, text: str, ngrams: tuple[int, int]) -> list[str]:
        lo, hi = ngrams
        if kind == "word":
            tokens = _WORD_RE.findall(text)
            out = list(tokens) if lo == 1 else []
            for n in range(max(lo, 2), hi + 1):
                out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            return out
        out = []
        for word in text.split():
            out.extend(_char_wb(word, lo, hi))
        return out

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sparse TF-IDF vector as (indices, values), L2-normalised."""
        if self.kind == "word":
            counts = Counter(i for i in map(self.index.get, self.terms("word", text, self.ngrams)) if i is not None)
        else:
            counts = Counter()
            cache, index = self._word_cache, self.index
            if len(cache) > 200_000:  # bound memory in a long-running server
                cache.clear()
            for word in text.split():
                ids = cache.get(word)
                if ids is None:
                    ids = cache[word] = [i for i in map(index.get, _char_wb(word, *self.ngrams)) if i is not None]
                counts.update(ids)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[indices]
        values /= np.linalg.norm(values)
        return indices, values.astype(np.float32)


def _char_wb(word: str, lo: int, hi: int) -> list[str]:
    padded = f" {word} "
    size = len(padded)
    return [padded[i : i + n] for n in range(lo, min(hi, size) + 1) for i in range(size - n + 1)]


def _document(issue: Issue, options: TfidfOptions) -> str:
    title = issue.title.lower()
    text = " ".join([title] * options.title_repeats) + "\n" + (issue.body or "").lower()
    return text[: options.max_chars]


def _fit_block(kind: str, documents: Sequence[str], ngrams: tuple[int, int], options: TfidfOptions) -> _Block:
    df: Counter[str] = Counter()
    for doc in documents:
        df.update(set(_Block.terms(kind, doc, ngrams)))
    kept = [(term, count) for term, count in df.items() if count >= options.min_df]
    kept.sort(key=lambda tc: (-tc[1], tc[0]))
    vocabulary = sorted(term for term, _ in kept[: options.max_features])
    n = len(documents)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in vocabulary], dtype=np.float64)
    return _Block(kind, ngrams, vocabulary, idf)


class TfidfEngine(BaseEngine):
    name = "tfidf"
    Options = TfidfOptions
    generative = False

    def __init__(self, options: TfidfOptions | None = None):
        self.options = options or TfidfOptions()
        self.info: EngineInfo = {}
        self.blocks: list[_Block] = []
        self.coef = np.zeros((0, 0), dtype=np.float32)  # (labels, features)
        self.intercept = np.zeros(0, dtype=np.float32)

    # -- features ------------------------------------------------------------------------------

    def _rows(self, issues: Sequence[Issue]):
        offsets = np.cumsum([0] + [len(b.vocabulary) for b in self.blocks])
        for issue in issues:
            doc = _document(issue, self.options)
            parts = [block.vector(doc) for block in self.blocks]
            yield (
                np.concatenate([idx + off for (idx, _), off in zip(parts, offsets)]),
                np.concatenate([val for _, val in parts]),
            )

    def _matrix(self, issues: Sequence[Issue]):
        from scipy.sparse import csr_matrix

        indptr, indices, values = [0], [], []
        for idx, val in self._rows(issues):
            indices.append(idx)
            values.append(val)
            indptr.append(indptr[-1] + len(idx))
        width = sum(len(b.vocabulary) for b in self.blocks)
        return csr_matrix(
            (np.concatenate(values) if values else np.zeros(0), np.concatenate(indices) if indices else np.zeros(0, int), indptr),
            shape=(len(issues), width),
        )

    # -- protocol ------------------------------------------------------------------------------

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        opts = self.options
        train = train + (task.label_issues() if opts.label_documents else [])
        documents = [_document(issue, opts) for issue in train]
        self.blocks = [
            _fit_block("word", documents, opts.word_ngrams, opts),
            _fit_block("char", documents, opts.char_ngrams, opts),
        ]
        self.coef, self.intercept = fit_logistic_heads(
            self._matrix(train), gold_matrix(train, task.label_names), opts.C, opts.class_weight == "balanced", seed,
            solver="liblinear",
        )

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        logits = np.empty((len(issues), len(self.intercept)), dtype=np.float64)
        for row, (idx, val) in enumerate(self._rows(issues)):
            logits[row] = self.coef[:, idx] @ val + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """Per label, the issue's terms that weighed most toward it (weight x tf-idf value)."""
        idx, val = next(self._rows([issue]))
        if not hasattr(self, "_terms"):
            self._terms = [term for block in self.blocks for term in block.vocabulary]
        terms = self._terms
        evidence = {}
        for label in labels:
            pull = self.coef[names.index(label), idx] * val
            best = [k for k in np.argsort(-pull)[:top] if pull[k] > 0]
            evidence[label] = [f"terms: {', '.join(repr(terms[idx[k]].strip()) for k in best)}"] if best else []
        return evidence

    def shared_files(self) -> list[Path]:
        return []

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "options.json", asdict(self.options))
        vocab = {b.kind: b.vocabulary for b in self.blocks}
        write_json(directory / "vocabulary.json", vocab, indent=None)  # hundreds of thousands of terms: no indent
        arrays = {f"idf_{b.kind}": b.idf for b in self.blocks}
        np.savez(directory / "weights.npz", coef=self.coef, intercept=self.intercept, **arrays)

    @classmethod
    def load(cls, directory: Path) -> TfidfEngine:
        options = options_from_json(TfidfOptions, json.loads((directory / "options.json").read_text(encoding="utf-8")))
        engine = cls(options)
        vocab = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        with np.load(directory / "weights.npz", allow_pickle=False) as weights:
            engine.coef, engine.intercept = weights["coef"], weights["intercept"]
            engine.blocks = [
                _Block(kind, options.word_ngrams if kind == "word" else options.char_ngrams, vocab[kind], weights[f"idf_{kind}"])
                for kind in ("word", "char")
            ]
        return engine
