"""Annotation runs: every issue asked of every teacher (cached, concurrent, budgeted), their answers
combined into labeled issues, and the labeled file written.

- Every answer is cached (`annotate.cache`): reruns ask only for what is missing or changed.
- `concurrency` requests in flight; `max_cost` stops submitting before the budget would be exceeded;
  `dry_run` estimates tokens and cost and sends nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Issue, write_jsonl
from ..errors import IssuelabError
from .cache import AnnotationCache, Answer, Spending
from .consensus import consensus
from .teachers import Teacher, TeacherError, issue_hash


@dataclass
class AnnotationResult:
    """Answers per teacher, by issue index; counts of what happened."""

    answers: dict[str, dict[int, Answer]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # teacher name -> model
    asked: int = 0
    cached: int = 0
    invalid: int = 0
    failed: int = 0
    not_asked: int = 0  # left out by the budget
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    budget_stopped: bool = False
    errors: list[str] = field(default_factory=list)
    earlier: Spending = field(default_factory=Spending)  # the cache's spending before this run (all earlier runs)


def annotate(
    issues: Sequence[Issue],
    teachers: Sequence[Teacher],
    cache: AnnotationCache,
    *,
    concurrency: int = 8,
    max_cost: float | None = None,
    max_total_cost: float | None = None,
    progress: bool = True,
) -> AnnotationResult:
    """`max_cost` bounds this run's spending; `max_total_cost` the cache's over all runs (requests that
    died with their run included, at their estimate)."""
    from tqdm.auto import tqdm

    result = AnnotationResult(answers={t.name: {} for t in teachers}, models={t.name: t.config.model for t in teachers})
    result.earlier = cache.spending()
    if max_total_cost is not None:
        left = max(0.0, max_total_cost - result.earlier.total)
        max_cost = left if max_cost is None else min(max_cost, left)
    pending: list[tuple[Teacher, int, str]] = []
    for teacher in teachers:
        for index, issue in enumerate(issues):
            key = issue_hash(issue)
            cached = cache.get(teacher.name, teacher.config.model, teacher.prompt.hash, key)
            if cached is not None:
                result.answers[teacher.name][index] = cached
                result.cached += 1
            else:
                pending.append((teacher, index, key))
    if not pending:
        return result

    reserved = 0.0  # estimated cost of the requests in flight

    def job(teacher: Teacher, index: int, key: str, estimate: float) -> Answer:
        request_id = cache.sent(teacher.name, teacher.config.model, key, estimate)
        try:
            answer = teacher.label(issues[index])
        except TeacherError:
            cache.failed(request_id)
            raise
        cache.put(teacher.name, teacher.config.model, teacher.prompt.hash, key, answer, teacher.prompt.messages(issues[index]), request_id)
        return answer

    bar = tqdm(total=len(pending), desc="annotating", unit="request", file=sys.stderr, disable=None if progress else True)
    in_flight: dict[Future, tuple[Teacher, int, float]] = {}
    queue = list(reversed(pending))
    fatal: TeacherError | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="issuelab-teacher") as pool:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < concurrency and fatal is None:
                    teacher, index, key = queue[-1]
                    estimate = teacher.estimated_cost(issues[index])
                    if max_cost is not None and result.cost + reserved + estimate > max_cost:
                        result.budget_stopped = True
                        break
                    queue.pop()
                    reserved += estimate
                    in_flight[pool.submit(job, teacher, index, key, estimate)] = (teacher, index, estimate)
                if result.budget_stopped or fatal is not None:
                    result.not_asked += len(queue)
                    queue.clear()
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    teacher, index, estimate = in_flight.pop(future)
                    reserved -= estimate
                    try:
                        answer = future.result()
                    except TeacherError as e:
                        result.failed += 1
                        result.errors.append(str(e))
                        if e.fatal:
                            fatal = fatal or e
                        continue
                    result.answers[teacher.name][index] = answer
                    result.asked += 1
                    result.invalid += answer.status == "invalid"
                    result.cost += answer.cost
                    result.prompt_tokens += answer.prompt_tokens
                    result.completion_tokens += answer.completion_tokens
                    bar.update(1)
                    bar.set_postfix(cost=f"${result.cost:.4f}", invalid=result.invalid, refresh=False)
        except KeyboardInterrupt:
            for future in in_flight:
                future.cancel()
            raise
        finally:
            bar.close()
    if fatal is not None:
        raise fatal
    return result


def dry_run(issues: Sequence[Issue], teachers: Sequence[Teacher], cache: AnnotationCache) -> list[dict[str, Any]]:
    """Per teacher: requests that would be sent (cached ones excluded), estimated tokens and cost."""
    rows = []
    for teacher in teachers:
        todo = [i for i in issues if cache.get(teacher.name, teacher.config.model, teacher.prompt.hash, issue_hash(i)) is None]
        prompt_tokens = completion_tokens = 0
        for issue in todo:
            p, c = teacher.estimate(issue)
            prompt_tokens, completion_tokens = prompt_tokens + p, completion_tokens + c
        cost = (prompt_tokens * teacher.config.input_price + completion_tokens * teacher.config.output_price) / 1e6
        rows.append({"teacher": teacher.name, "model": teacher.config.model, "requests": len(todo),
                     "cached": len(issues) - len(todo), "prompt_tokens": prompt_tokens,
                     "completion_tokens": completion_tokens, "cost": round(cost, 6)})  # fmt: skip
    return rows


def labeled_records(
    issues: Sequence[Issue], result: AnnotationResult, label_names: Sequence[str], min_votes: int = 0
) -> tuple[list[Issue], list[dict[str, Any]], list[dict[str, list[str] | None]]]:
    """(labeled issues, invalid records, votes per labeled issue). An issue is labeled when every teacher
    has an answer and at least one is valid; invalid when every answer is invalid; else left for a rerun."""
    labeled, invalid, votes_list = [], [], []
    names = list(result.answers)
    for index, issue in enumerate(issues):
        answers = {name: result.answers[name].get(index) for name in names}
        if any(a is None for a in answers.values()):
            continue  # failed or not asked: a rerun asks again
        votes = {name: (a.labels if a.status == "ok" else None) for name, a in answers.items()}
        if all(v is None for v in votes.values()):
            invalid.append(dict(issue.to_dict(), invalid=True, raw={name: a.raw for name, a in answers.items()}))
            continue
        labels, agreement = consensus(votes, label_names, min_votes)
        source = "consensus" if len(names) > 1 else f"teacher:{result.models.get(names[0], names[0])}"
        extra = dict(issue.extra, source=source, teachers=votes)
        if len(names) > 1:
            extra["agreement"] = round(agreement, 4)
        labeled.append(Issue(issue.id, issue.title, issue.body, labels, extra))
        votes_list.append(votes)
    return labeled, invalid, votes_list


@dataclass
class AnnotationOutcome:
    """What `annotate_into` asked, labeled and wrote."""

    result: AnnotationResult
    labeled: list[Issue]  # labeled by this run
    total: int  # labeled issues in the output file (earlier ones included)
    invalid: int  # issues no teacher answered validly
    invalid_path: str | Path
    left: int  # issues neither labeled nor invalid (failed or over the budget): a rerun asks again

    def summary(self, out: str | Path) -> str:
        r = self.result
        return (
            f"{out}: {self.total} labeled issues ({len(self.labeled)} from this run); {self.invalid} invalid"
            f"{' -> ' + str(self.invalid_path) if self.invalid else ''}; requests: {r.asked} asked, {r.cached} cached, "
            f"{r.invalid} invalid answers, {r.failed} failed; tokens {r.prompt_tokens} in / "
            f"{r.completion_tokens} out; cost ${r.cost:.4f}; the cache's total over all runs ${r.earlier.total + r.cost:.4f}"
            + (f" (including about ${r.earlier.lost_estimate:.4f} for {r.earlier.lost} requests sent by runs that died "
               "before storing the answer)" if r.earlier.lost else "")
        )

    def check_failures(self) -> None:
        if self.result.failed:
            raise IssuelabError(f"{self.result.failed} requests failed (first: {self.result.errors[0]}); what was answered "
                                "is cached and written: run the same command again to resume")  # fmt: skip


def annotate_into(
    out: str | Path,
    issues: Sequence[Issue],
    teachers: Sequence[Teacher],
    cache: AnnotationCache,
    label_names: Sequence[str],
    *,
    min_votes: int = 0,
    previous: Sequence[Issue] = (),
    invalid_out: str | Path | None = None,
    concurrency: int = 8,
    max_cost: float | None = None,
    max_total_cost: float | None = None,
) -> AnnotationOutcome:
    """Annotates `issues`, merges them into the `previous` labeled issues (by id, the new answer wins) and
    writes `out`; issues no teacher answered validly go to `invalid_out` (default: OUT.invalid.jsonl)."""
    result = annotate(issues, teachers, cache, concurrency=concurrency, max_cost=max_cost, max_total_cost=max_total_cost)
    labeled, invalid, _ = labeled_records(issues, result, label_names, min_votes)
    new_ids = {issue.id for issue in labeled}
    merged = [issue for issue in previous if issue.id not in new_ids] + labeled
    write_jsonl(out, merged)
    invalid_path = invalid_out or str(Path(out).with_suffix("")) + ".invalid.jsonl"
    if invalid:
        write_jsonl(invalid_path, invalid)
    return AnnotationOutcome(result, labeled, len(merged), len(invalid), invalid_path, len(issues) - len(labeled) - len(invalid))


class BudgetedTeachers:
    """Teachers as a labeling function (issues -> labeled issues) for rounds of active learning: every call
    spends from one budget (`max_cost` USD over all calls, None for no limit)."""

    def __init__(self, teachers: Sequence[Teacher], cache: AnnotationCache, label_names: Sequence[str], *,
                 min_votes: int = 0, concurrency: int = 8, max_cost: float | None = None):  # fmt: skip
        self.teachers, self.cache, self.label_names, self.min_votes = teachers, cache, label_names, min_votes
        self.concurrency, self.max_cost = concurrency, max_cost
        self.spent = 0.0

    def __call__(self, issues: list[Issue]) -> list[Issue]:
        budget = None if self.max_cost is None else self.max_cost - self.spent
        result = annotate(issues, self.teachers, self.cache, concurrency=self.concurrency, max_cost=budget)
        self.spent += result.cost
        return labeled_records(issues, result, self.label_names, self.min_votes)[0]
