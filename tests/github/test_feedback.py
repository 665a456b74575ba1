"""`issuelab feedback`: the labels people removed or added after the bot, from a recorded event history."""

from __future__ import annotations

import json

from issuelab.data import write_jsonl
from issuelab.github.feedback import corrections

from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
BOT = "github-actions[bot]"


def event(kind: str, label: str, actor: str, actor_type: str = "User") -> dict:
    return {"event": kind, "label": {"name": label}, "actor": {"login": actor, "type": actor_type}}


def test_corrections_count_only_what_people_did_after_the_bot():
    history = [
        event("labeled", "question", "alice"),  # a person's label before the bot: not a correction
        event("labeled", "bug", BOT, "Bot"),
        event("labeled", "ci/cd", BOT, "Bot"),
        event("unlabeled", "ci/cd", "maintainer"),  # the bot was wrong
        event("labeled", "documentation", "maintainer"),  # the bot missed it
        event("unlabeled", "documentation", "stale[bot]", "Bot"),  # another bot: not a person's judgement
        event("unlabeled", "question", "maintainer"),  # a label the bot never added
    ]
    assert corrections(history, BOT) == {"bot_added": ["bug", "ci/cd"], "removed_by_people": ["ci/cd"], "added_by_people": ["documentation"]}
    assert corrections([event("labeled", "bug", "alice")], BOT)["bot_added"] == []


def test_feedback_exports_the_corrected_examples_and_the_precision_people_gave_the_bot(cli, run_dir, tmp_path):
    with FakeGitHub() as fake:
        issues = [make_issue(n, f"issue {n}", "text", labels=labels) for n, labels in
                  ((1, ["bug"]), (2, ["documentation"]), (3, ["enhancement"]), (4, ["bug", "ci/cd"]))]  # fmt: skip
        for issue in issues:
            fake.add_issue(REPO, issue)
        fake.events[(REPO, 1)] = [event("labeled", "bug", BOT, "Bot")]  # kept
        fake.events[(REPO, 2)] = [event("labeled", "bug", BOT, "Bot"), event("unlabeled", "bug", "maintainer"),
                                  event("labeled", "documentation", "maintainer")]  # corrected  # fmt: skip
        fake.events[(REPO, 3)] = [event("labeled", "enhancement", "alice")]  # labeled by a person alone: not feedback
        fake.events[(REPO, 4)] = [event("labeled", "bug", BOT, "Bot"), event("labeled", "ci/cd", BOT, "Bot")]
        write_jsonl(tmp_path / "issues.jsonl", [{"id": i["number"], "number": i["number"], "title": i["title"], "body": i["body"],
                                                 "labels": [label["name"] for label in i["labels"]]} for i in issues])  # fmt: skip
        code, out, err = cli("feedback", "--repo", REPO, "--data", tmp_path / "issues.jsonl", "--out", tmp_path / "feedback.jsonl",
                             "--api-url", fake.url, "--json", tmp_path / "summary.json")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [row["number"] for row in rows] == [1, 2, 4]
    assert rows[1]["labels"] == ["documentation"] and rows[1]["removed_by_people"] == ["bug"] and rows[1]["added_by_people"] == ["documentation"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["labels_added_by_bot"] == 4 and summary["labels_removed_by_people"] == 1 and summary["precision_judged_by_people"] == 0.75
    assert "Precision as people judged it (kept / added): 75.0%" in out
    code, out, err = cli("backtest", "--model", run_dir, "--data", tmp_path / "issues.jsonl", "--feedback", tmp_path / "feedback.jsonl")
    assert code == 0, err
    assert "of 4 labels the bot added, 1 were removed: precision 75.0%; people added 1 it had missed" in out


def test_feedback_refuses_a_file_that_fetch_did_not_write(cli, tmp_path):
    (tmp_path / "issues.jsonl").write_text('{"id": "a", "title": "x", "labels": []}\n')
    code, _, err = cli("feedback", "--repo", REPO, "--data", tmp_path / "issues.jsonl", "--out", tmp_path / "f.jsonl", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "issues.jsonl:1: no integer 'number'" in err and not (tmp_path / "f.jsonl").exists()
