"""`ensemble`: the scores of several engines, averaged with weights.

Each member is trained with its own `[train.<engine>]` options. An engine listed twice is trained twice,
the second time with the next seed (its run folder `<engine>-2`): averaging seeds steadies a fine-tuned
member. Scores are made comparable first:
for single-label data each member's row is normalised to sum to one (a distribution over labels);
for multi-label data the members' per-label probabilities are averaged as they are. Weights come from
`weights`; else, when every member is quick to refit, from the members' out-of-fold scores: equal
weights unless another point of a grid over the simplex (step 0.1; a member alone is such a point) beats
them by more than WEIGHTING_MARGIN micro F1 at the best single threshold. Out-of-fold F1 on ~130
issues varies by about 0.03 between draws: picking the grid's maximum chased that noise and lost
0.008-0.015 micro F1 on held-out issues of the multi-label sets, while a member that is clearly worse (or
useless) is still weighted down or left out. A member whose out-of-fold scores are optimistic (`fewshot`
adapted once on all the training issues) is never weighted above its equal share on them: at k = 5 labeled
issues per label its out-of-fold F1 read 0.71-0.74 where held-out issues gave 0.57, and the grid handed it
the whole weight (docs/benchmarks.md). Else from the eval split; else they are equal. The
labeler tunes per-label thresholds on the combined scores afterwards.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import Issue, write_json
from ..metrics import f1, gold_matrix
from ..policy import label_matrix, labels_at
from ..thresholds import THRESHOLD_GRID
from . import Engine, EngineInfo, Task
from .registry import ENGINES, create_engine, engine_class

WEIGHTING_MARGIN = 0.02  # out-of-fold micro F1 another weighting must gain over equal weights to be used
PREDICT_CHUNK = 64  # issues each member scores in turn (64 x 1.3 MB of frozen-layer states at 512 tokens)


@dataclass
class EnsembleOptions:
    engines: tuple[str, ...] = ("tfidf", "fewshot")  # fewshot: MiniLM adapted to the repository's label texts
    weights: tuple[float, ...] = ()  # empty: tuned on the eval split, or equal without one

    def __post_init__(self) -> None:
        unknown = [e for e in self.engines if e not in ENGINES or e == "ensemble"]
        if len(self.engines) < 2 or unknown:
            raise ValueError(f"engines must name two or more of {', '.join(k for k in ENGINES if k != 'ensemble')}; bad: {unknown}")
        if self.weights and (len(self.weights) != len(self.engines) or min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError("weights: one non-negative weight per engine, not all zero")


def repeats(engines) -> list[int]:
    """How often each listed engine came before: 0 for its first listing, 1 for the second..."""
    return [list(engines[:k]).count(engine) for k, engine in enumerate(engines)]


def member_names(engines) -> list[str]:
    """One name (and run folder) per listed engine: the engine, then `<engine>-2`, `<engine>-3` for repeats."""
    return [engine if r == 0 else f"{engine}-{r + 1}" for engine, r in zip(engines, repeats(engines))]


def normalise_rows(scores: np.ndarray) -> np.ndarray:
    """Single-label scores as distributions over the labels, so members of any scale average fairly."""
    return scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)


def _grid(n: int, step: float = 0.1) -> list[tuple[float, ...]]:
    ticks = round(1 / step)
    return [tuple(c / ticks for c in combo) + ((ticks - sum(combo)) / ticks,)
            for combo in itertools.product(range(ticks + 1), repeat=n - 1) if sum(combo) <= ticks]  # fmt: skip


def _micro_f1(scores: np.ndarray, gold: np.ndarray, multi_label: bool) -> float:
    pred = labels_at(scores, multi_label)  # one threshold: per-label ones are tuned on the mix afterwards
    return f1(int((pred & gold).sum()), int(pred.sum()), int(gold.sum()))


def _best_threshold_f1(scores: np.ndarray, gold: np.ndarray, multi_label: bool, min_labels: int) -> float:
    """Micro F1 at the best single threshold (the argmax for single-label data): how good a mix can be
    once its thresholds are tuned."""
    if not multi_label:
        return _micro_f1(scores, gold, multi_label)
    best = 0.0
    for threshold in THRESHOLD_GRID:
        pred = label_matrix(scores, threshold, True, min_labels, 0)
        best = max(best, f1(int((pred & gold).sum()), int(pred.sum()), int(gold.sum())))
    return best


class EnsembleEngine:
    name = "ensemble"
    Options = EnsembleOptions
    generative = False
    has_members = True  # the registry hands it a factory for its members

    def __init__(self, options: EnsembleOptions | None = None, make_member: Callable[[str], Engine] = create_engine):
        self.options = options or EnsembleOptions()
        self.make_member = make_member  # engine name -> an untrained engine with that engine's options
        self.info: EngineInfo = {}

    def quick_to_fit(self, task: Task) -> bool:
        return all(self.make_member(engine).quick_to_fit(task) for engine in set(self.options.engines))

    def _combine(self, member_scores: list[np.ndarray | None], weights) -> np.ndarray:
        used = [(w, s) for w, s in zip(weights, member_scores) if w > 0]
        if not self.multi_label:
            used = [(w, normalise_rows(s)) for w, s in used]
        return sum(w * s for w, s in used) / sum(w for w, _ in used)

    def _fit_members(self, fit_member) -> list:
        """Fits one member per listed engine, a repeated engine with the next seed; returns what each fit returned."""
        self.members, results = [], []
        for engine, repeat in zip(self.options.engines, repeats(self.options.engines)):
            member = self.make_member(engine)
            results.append(fit_member(member, repeat))
            self.members.append(member)
        return results

    def fit(self, train: list[Issue], eval: list[Issue] | None, task: Task, seed: int = 0) -> None:
        self.multi_label = task.multi_label
        self._fit_members(lambda member, repeat: member.fit(train, eval, task, seed + repeat))
        if self.options.weights:
            self.weights = tuple(self.options.weights)
        elif eval:
            scores = [m.predict_scores(eval) for m in self.members]
            gold = gold_matrix(eval, task.label_names)
            self.weights = max(_grid(len(self.members)), key=lambda w: (_micro_f1(self._combine(scores, w), gold, self.multi_label), -np.std(w)))
        else:
            self.weights = tuple(1 / len(self.members) for _ in self.members)
        self._record("weights tuned on the eval split" if eval and not self.options.weights else "weights given or equal")

    def fit_out_of_fold(self, train: list[Issue], task: Task, seed: int, folds: int) -> np.ndarray:
        """Each member's out-of-fold scores and the weights chosen on them (micro F1 at the best single
        threshold): equal unless a weighting, or a member alone, beats them by more than WEIGHTING_MARGIN."""
        self.multi_label = task.multi_label
        member_scores = self._fit_members(lambda member, repeat: member.fit_out_of_fold(train, task, seed + repeat, folds))
        gold = gold_matrix(train, task.label_names)
        min_labels = 1 if all(issue.labels for issue in train) else 0

        @functools.cache  # weights tuple -> F1: the grid, the members alone and equal weights overlap
        def quality(weights) -> float:
            return _best_threshold_f1(self._combine(member_scores, weights), gold, self.multi_label, min_labels)

        n, names = len(self.members), member_names(self.options.engines)
        alone = [quality(tuple(float(k == j) for k in range(n))) for j in range(n)]
        equal = tuple(1 / n for _ in range(n))
        if self.options.weights:
            self.weights, how = tuple(self.options.weights), "weights given"
        else:
            optimistic = [getattr(member, "optimistic_out_of_fold", False) for member in self.members]
            # optimistic scores can argue a member down, never up
            candidates = [w for w in _grid(n) if all(share <= 1 / n + 1e-9 for share, o in zip(w, optimistic) if o)]
            best = max(candidates, key=lambda w: (quality(w), -np.std(w)))
            if quality(best) > quality(equal) + WEIGHTING_MARGIN:
                self.weights, how = best, f"weights chosen on out-of-fold scores (beat equal weights by more than {WEIGHTING_MARGIN})"
                if max(best) == 1.0:
                    how = f"{names[best.index(1.0)]} alone: it beat every mix out of fold by more than {WEIGHTING_MARGIN}"
            else:
                self.weights, how = equal, f"equal weights: no weighting beat them by more than {WEIGHTING_MARGIN} out of fold"
            if any(optimistic):
                how += f"; not above an equal share: {', '.join(name for name, o in zip(names, optimistic) if o)} (optimistic out-of-fold scores)"
        out_of_fold = {name: round(f, 5) for name, f in zip(names, alone)}
        self._record(how, out_of_fold | {"equal": round(quality(equal), 5), "mix": round(quality(self.weights), 5)})
        return self._combine(member_scores, self.weights)

    def _record(self, how: str, out_of_fold_f1: dict | None = None) -> None:
        names = member_names(self.options.engines)
        self.info = {"weights": dict(zip(names, self.weights)), "weighting": how,
                     "members": {n: m.info for n, m, w in zip(names, self.members, self.weights) if w > 0}}  # fmt: skip
        if out_of_fold_f1:
            self.info["out_of_fold_micro_f1"] = out_of_fold_f1

    def predict_scores(self, issues: list[Issue]) -> np.ndarray:
        issues = list(issues)
        if len(issues) > PREDICT_CHUNK:  # members in turn on a few issues at a time: work they share (the frozen
            # layers of a head's seeds) is still cached when the next member reads the same issues
            return np.concatenate([self.predict_scores(issues[k : k + PREDICT_CHUNK]) for k in range(0, len(issues), PREDICT_CHUNK)])
        return self._combine([m.predict_scores(issues) if w > 0 else None for m, w in zip(self.members, self.weights)], self.weights)

    def explain(self, issue: Issue, labels: list[str], names: list[str], top: int = 3) -> dict[str, list[str]]:
        """Each used member's evidence, named by member."""
        evidence: dict[str, list[str]] = {label: [] for label in labels}
        for name, member, weight in zip(member_names(self.options.engines), self.members, self.weights):
            if weight > 0 and hasattr(member, "explain"):
                for label, lines in member.explain(issue, labels, names, top).items():
                    evidence[label] += [f"{name}: {line}" for line in lines]
        return evidence

    def shared_files(self) -> list[Path]:
        return sorted(set().union(*(m.shared_files() for m, w in zip(self.members, self.weights) if w > 0)))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, member, weight in zip(member_names(self.options.engines), self.members, self.weights):
            if weight > 0:  # a member the mix does not use is not kept
                member.save(directory / name)
        write_json(directory / "ensemble.json",
                   {"options": asdict(self.options), "weights": list(self.weights), "multi_label": self.multi_label, "info": self.info})  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> EnsembleEngine:
        state = json.loads((directory / "ensemble.json").read_text(encoding="utf-8"))
        options = state["options"]
        engine = cls(EnsembleOptions(engines=tuple(options["engines"]), weights=tuple(options["weights"])))
        engine.weights, engine.multi_label, engine.info = tuple(state["weights"]), state["multi_label"], state["info"]
        names = member_names(engine.options.engines)
        engine.members = [engine_class(e).load(directory / n) if w > 0 else None
                          for e, n, w in zip(engine.options.engines, names, engine.weights)]  # fmt: skip
        return engine
