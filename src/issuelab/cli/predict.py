"""Labeling issues with a run: predict."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import IssuelabError
from .common import command


def cmd_predict(args: argparse.Namespace) -> None:
    from ..data import Issue, read_issues, write_jsonl
    from ..labeler import Labeler, prediction_records

    labeler = Labeler.load(args.model)
    if args.input:
        if not args.out:
            raise IssuelabError("--input needs --out FILE for the predictions JSONL")
        issues = read_issues(args.input, labeler.label_names, require_labels=False)
        write_jsonl(args.out, prediction_records(issues, labeler.predict(issues, progress=True)))
        print(f"predicted {len(issues)} issues -> {args.out}", file=sys.stderr)
        return
    issue = Issue(id=0, title=args.title, body=args.body) if args.title is not None else _stdin_issue()
    prediction = labeler.predict([issue])[0]
    evidence = labeler.explain(issue, prediction.labels) if args.explain else {}
    if args.json:
        print(json.dumps({"labels": prediction.labels, "scores": prediction.scores} | ({"evidence": evidence} if args.explain else {}), ensure_ascii=False))
        return
    for label in prediction.labels:
        print(f"{label}\t{prediction.scores[label]:.3f}")
        for line in evidence.get(label, []):
            print(f"  {line}")


def _stdin_issue():
    from ..data import Issue

    if sys.stdin.isatty():
        raise IssuelabError("give --title (and --body), --input FILE.jsonl, or a JSON issue on stdin")
    try:
        obj = json.loads(sys.stdin.read())
    except json.JSONDecodeError as e:
        raise IssuelabError(f"stdin: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("title"), str):
        raise IssuelabError('stdin: expected a JSON object with a "title" string (and "body")')
    body = obj.get("body")
    return Issue(id=obj.get("id", 0), title=obj["title"], body=body if isinstance(body, str) else None)


def add_parsers(sub) -> None:
    p = command(sub, "predict", cmd_predict, "Label one issue (--title/--body or a JSON object on stdin) or a JSONL batch.",
                "examples:\n  issuelab predict --model runs/tfidf --title 'Crash on start' --body '...'\n"
                "  echo '{\"title\": \"Crash\", \"body\": null}' | issuelab predict --model runs/tfidf\n"
                "  issuelab predict --model runs/tfidf --input new.jsonl --out predictions.jsonl")  # fmt: skip
    p.add_argument("--model", required=True, metavar="RUN_DIR")
    p.add_argument("--title")
    p.add_argument("--body")
    p.add_argument("--input", help="dataset JSONL to label (labels optional)")
    p.add_argument("--out", help="predictions JSONL to write, with --input")
    p.add_argument("--json", action="store_true", help="print {labels, scores} as JSON")
    p.add_argument("--explain", action="store_true", help="the evidence for each label: terms (tfidf), similar labeled issues and the description (fewshot)")
