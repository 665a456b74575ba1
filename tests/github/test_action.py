"""`issuelab action`: an issues event in, labels added through the API under the policy, a job summary out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..helpers import REPO_ROOT, TOY_CONFIG, make_issues
from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
TOKEN = "ghs_action_token"


def write_event(tmp_path: Path, number: int, action: str = "opened") -> Path:
    path = tmp_path / "event.json"
    payload = {"action": action, "issue": {"number": number, "title": "stale"}, "repository": {"full_name": REPO}}
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture
def github(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, "app crash with traceback", "it fails with an exception error, broken"))
        yield fake


def action(cli, run_dir, event, fake, *extra):
    return cli("action", "--model", run_dir, "--event", event, "--event-name", "issues", "--api-url", fake.url, *extra)


def test_labels_the_issue_once_and_writes_the_summary(cli, run_dir, github, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output.txt"))
    code, out, err = action(cli, run_dir, write_event(tmp_path, 1), github)
    assert code == 0, err
    decision = json.loads(out)
    assert decision["action"] == "label" and "bug" in decision["labels"]
    assert github.posts_for(REPO, 1) == [decision["labels"]]  # one POST, the decided labels
    assert github.issue_labels(REPO, 1) == decision["labels"]
    summary = (tmp_path / "summary.md").read_text()
    assert f"issuelab: {REPO}#1" in summary and "**added**: `bug`" in summary and "| bug |" in summary
    assert f"labels={json.dumps(decision['labels'])}" in (tmp_path / "output.txt").read_text()
    assert TOKEN not in out + err + summary

    code, out, _ = action(cli, run_dir, write_event(tmp_path, 1), github)  # the run again: already labeled
    assert json.loads(out)["action"] == "skip" and len(github.posts_for(REPO, 1)) == 1


def test_a_label_removed_by_a_person_is_not_added_back(cli, run_dir, github, tmp_path):
    github.add_event(REPO, 1, "labeled", "bug", actor="github-actions[bot]", actor_type="Bot")
    github.add_event(REPO, 1, "unlabeled", "bug", actor="maintainer")
    code, out, _ = action(cli, run_dir, write_event(tmp_path, 1, "reopened"), github, "--on", "opened", "reopened")
    assert code == 0
    decision = json.loads(out)
    assert "bug" not in decision["labels"] and "not re-adding bug" in decision["reason"]
    assert all("bug" not in labels for labels in github.posts_for(REPO, 1))


def test_dry_run_adds_nothing(cli, run_dir, github, tmp_path):
    code, out, _ = action(cli, run_dir, write_event(tmp_path, 1), github, "--dry-run")
    assert code == 0 and json.loads(out)["dry_run"] and "bug" in json.loads(out)["labels"]
    assert github.label_posts == []


def test_policy_from_a_config_file(cli, run_dir, github, tmp_path):
    config = tmp_path / "issuelab.toml"
    config.write_text(TOY_CONFIG + 'skip_authors = ["alice"]\n')
    code, out, _ = action(cli, run_dir, write_event(tmp_path, 1), github, "--config", config)
    assert code == 0 and json.loads(out)["action"] == "skip" and "skip_authors" in json.loads(out)["reason"]
    assert github.label_posts == []


def test_bots_pull_requests_and_other_actions_are_left_alone(cli, run_dir, github, tmp_path):
    github.add_issue(REPO, make_issue(2, "bump the crash dependency", user="dependabot[bot]", user_type="Bot"))
    github.add_issue(REPO, make_issue(3, "fix crash", pull_request=True))
    assert json.loads(action(cli, run_dir, write_event(tmp_path, 2), github)[1])["reason"].startswith("opened by a bot")
    assert json.loads(action(cli, run_dir, write_event(tmp_path, 3), github)[1])["reason"] == "a pull request"
    code, out, _ = action(cli, run_dir, write_event(tmp_path, 1, "edited"), github)
    assert code == 0 and "nothing to do: issues.edited is not one of: opened" in out
    assert github.label_posts == []


def test_a_failing_api_is_retried_and_labels_land_once(cli, run_dir, github, tmp_path):
    github.fail(status=502, method="POST", path_contains="/labels")  # GitHub answers 502 once, then succeeds
    github.fail(status=429, headers={"Retry-After": "0"}, method="GET")
    code, out, err = action(cli, run_dir, write_event(tmp_path, 1), github)
    assert code == 0, err
    labels = json.loads(out)["labels"]
    assert github.issue_labels(REPO, 1) == labels  # each label once, whatever the retries
    assert "waiting 0 s" in err and "HTTP 502; retrying" in err


def test_clear_errors_for_a_missing_token_or_event(cli, run_dir, github, tmp_path, monkeypatch):
    code, _, err = cli("action", "--model", run_dir, "--event", tmp_path / "nope.json", "--api-url", github.url)
    assert code == 2 and "nope.json: event file not found" in err
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("GH_TOKEN", raising=False)
    code, _, err = action(cli, run_dir, write_event(tmp_path, 1), github)
    assert code == 2 and "no token: set GITHUB_TOKEN" in err


def test_action_yml_runs_the_cli_and_the_example_workflows_parse():
    import yaml

    root = REPO_ROOT
    action = yaml.safe_load((root / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    commands = "\n".join(step.get("run", "") for step in action["runs"]["steps"])
    assert "issuelab action" in commands and "--model" in commands
    for name in ("inputs",):
        assert "model" in action[name] and "token" in action[name]
    workflows = sorted((root / "examples/workflows").glob("*.yml"))
    assert {w.stem for w in workflows} >= {"label-issues", "train-model", "backtest"}
    for workflow in workflows:
        parsed = yaml.safe_load(workflow.read_text())
        assert parsed["jobs"], workflow


def test_backtest_reports_matches_mismatches_and_no_prediction(cli, run_dir, tmp_path, monkeypatch):
    from issuelab.data import write_jsonl

    issues = make_issues(120, seed=7)
    for k, issue in enumerate(issues):
        issue.extra = {"number": 1000 - k, "repo": REPO}  # newest first, as a fetch might list them
    issues[0].labels = ["kind/docs"]  # a repository label outside the run: not ground truth, dropped
    write_jsonl(tmp_path / "issues.jsonl", issues)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    code, out, err = cli("backtest", "--model", run_dir, "--data", tmp_path / "issues.jsonl", "--last", "50", "--json", tmp_path / "b.json")
    assert code == 0, err
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["issues"] == 50 and sum(result["outcomes"].values()) == 50
    assert {row["id"] for row in result["rows"]} == {issue.id for issue in issues[1:51]}  # the 50 highest numbers
    assert result["outcomes"]["match"] > result["outcomes"]["mismatch"]
    for row in result["rows"]:
        expected = "no prediction" if not row["added"] else "match" if set(row["added"]) <= set(row["gold"]) else "mismatch"
        assert row["outcome"] == expected
    assert "| match |" in out and (tmp_path / "summary.md").read_text() == out.rstrip("\n") + "\n"
    assert "| x1 |" in out and "issues labeled" in out


def test_backtest_prints_and_draws_the_precision_coverage_trade_off(cli, run_dir, tmp_path):
    from issuelab.data import Issue, write_jsonl

    vague = [Issue(1000 + k, f"question {k} about the thing", "it does something odd sometimes", ["bug"]) for k in range(20)]
    write_jsonl(tmp_path / "issues.jsonl", make_issues(40, seed=9) + vague)
    code, out, err = cli("backtest", "--model", run_dir, "--data", tmp_path / "issues.jsonl", "--last", "0",
                         "--plot", tmp_path / "trade.png", "--json", tmp_path / "b.json")  # fmt: skip
    assert code == 0, err
    trade = json.loads((tmp_path / "b.json").read_text())["precision_coverage"]  # stricter thresholds: never more labeled
    assert [r["scale"] for r in trade] == sorted(r["scale"] for r in trade)
    assert all(a["coverage"] >= b["coverage"] and a["recall"] >= b["recall"] for a, b in zip(trade, trade[1:]))
    assert trade[0]["coverage"] > trade[-1]["coverage"]  # the vague issues are labeled only at loose thresholds
    assert "| x1 |" in out and (tmp_path / "trade.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suggest_mode_from_the_config_comments_once_and_the_summary_lists_the_suggestions(cli, run_dir, github, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    config = tmp_path / "issuelab.toml"
    config.write_text(TOY_CONFIG + "suggest = true\nsuggest_scale = 0.01\nskip_labeled = false\n")  # nearly every label suggested
    for _ in range(2):
        code, out, err = action(cli, run_dir, write_event(tmp_path, 1), github, "--config", config)
        assert code == 0, err
    decision = json.loads(out)
    assert decision["suggested"] and not {s["label"] for s in decision["suggested"]} & set(github.issue_labels(REPO, 1))
    (comment,) = github.comments[(REPO, 1)]  # two runs, one comment
    assert all(f"`{s['label']}`" in comment["body"] for s in decision["suggested"])
    assert "suggested (not added): " in (tmp_path / "summary.md").read_text() and TOKEN not in comment["body"]
    assert "| why |" in comment["body"] and "terms: " in comment["body"]  # the evidence of each suggestion
    summary = (tmp_path / "summary.md").read_text()
    assert "Why:" in summary and all(f"- `{name}`: " in summary for name in decision["evidence"])
    assert set(decision["evidence"]) == set(decision["labels"]) | {s["label"] for s in decision["suggested"]}


def test_a_bad_suggest_scale_is_refused_with_its_key(cli, run_dir, github, tmp_path):
    config = tmp_path / "issuelab.toml"
    config.write_text(TOY_CONFIG + "suggest = true\nsuggest_scale = 2\n")
    code, _, err = action(cli, run_dir, write_event(tmp_path, 1), github, "--config", config)
    assert code != 0 and "[policy] suggest_scale must be in (0, 1]" in err and github.label_posts == []


def test_backtest_counts_the_suggestions_apart_from_the_labels_it_adds(run_dir):
    from issuelab.backtest import backtest, format_report
    from issuelab.labeler import Labeler
    from issuelab.policy import PolicyConfig

    labeler, issues = Labeler.load(run_dir), make_issues(60, seed=8)
    plain = backtest(labeler, issues)
    result = backtest(labeler, issues, PolicyConfig(suggest=True, suggest_scale=0.01, min_labels=0))
    m = result["metrics"]
    assert plain["metrics"]["suggested"] == 0 and m["suggested"] > 0 and m["suggested_correct"] <= m["suggested"]
    assert m["suggested"] == sum(len(row["suggested"]) for row in result["rows"])
    assert all(not set(row["suggested"]) & set(row["added"]) for row in result["rows"])
    assert m["added"] <= plain["metrics"]["added"]  # suggest mode never adds more than the plain policy
    assert f"Labels suggested in a comment (policy.suggest): {m['suggested']}" in format_report(result, "toy")
