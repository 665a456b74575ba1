"""One issue on GitHub: read, scored once, decided once by the policy, labeled with one POST."""

from __future__ import annotations

from issuelab import labeler as labeler_module
from issuelab import policy
from issuelab.github.client import GitHubClient
from issuelab.github.labeling import GitHubLabeler
from issuelab.labeler import Labeler

from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
TOKEN = "ghs_labeling_token"


def test_each_issue_is_scored_once_and_its_labels_chosen_once(run_dir, monkeypatch):
    calls = {"choose_labels": 0, "predict_scores": 0}
    real_choose = policy.choose_labels

    def counting_choose(*args, **kwargs):
        calls["choose_labels"] += 1
        return real_choose(*args, **kwargs)

    monkeypatch.setattr(policy, "choose_labels", counting_choose)  # what `decide` calls
    monkeypatch.setattr(labeler_module, "choose_labels", counting_choose)  # what `Labeler.predict` would call
    labeler = Labeler.load(run_dir)
    real_scores = labeler.engine.predict_scores

    def counting_scores(issues):
        calls["predict_scores"] += 1
        return real_scores(issues)

    monkeypatch.setattr(labeler.engine, "predict_scores", counting_scores)
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, "app crash with traceback", "it fails with an exception error, broken"))
        client = GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None)
        decision = GitHubLabeler(labeler, client).label_issue(REPO, 1)
        assert decision.action == "label" and "bug" in decision.labels
        assert calls == {"choose_labels": 1, "predict_scores": 1}
        assert fake.posts_for(REPO, 1) == [decision.labels]


def test_a_run_directory_serves_each_repository_its_run_and_picks_up_a_replaced_one(run_dir, tmp_path):
    import os
    import shutil

    import pytest

    from issuelab.errors import IssuelabError
    from issuelab.github.labeling import RunDirectory

    models = tmp_path / "models"
    shutil.copytree(run_dir, models / "acme" / "widgets")
    with FakeGitHub() as fake:
        for repo in ("acme/widgets", "acme/gadgets"):
            fake.add_issue(repo, make_issue(1, "crash with a traceback", "it fails with an exception"))
        runs = RunDirectory(models, GitHubClient(fake.url, None, log=lambda m: None), dry_run=True)
        assert runs.label_issue("acme/widgets", 1).action == "label" and fake.label_posts == []  # dry run
        with pytest.raises(IssuelabError, match="no run for acme/gadgets in .*: add .*acme/gadgets or .*default"):
            runs.label_issue("acme/gadgets", 1)
        shutil.copytree(run_dir, models / "default")
        assert runs.labeler_for("acme/gadgets") is not runs.labeler_for("acme/widgets")
        first = runs.labeler_for("acme/widgets")
        assert runs.labeler_for("acme/widgets") is first  # loaded once
        manifest = models / "acme" / "widgets" / "manifest.json"
        os.utime(manifest, ns=(manifest.stat().st_atime_ns, manifest.stat().st_mtime_ns + 1_000_000))  # a new run promoted
        assert runs.labeler_for("acme/widgets") is not first
    with pytest.raises(IssuelabError, match="--models .*: not a directory"):
        RunDirectory(tmp_path / "nope", GitHubClient("http://127.0.0.1:9", None))


def _suggesting_labeler(run_dir, issue_text: tuple[str, str]):
    """The run with thresholds set around its own scores for one issue: the top label above its apply
    threshold, the second between its suggest and apply thresholds, the rest below both."""
    from issuelab.data import Issue

    labeler = Labeler.load(run_dir)
    scores = labeler.scores([Issue(1, *issue_text)])[0]
    first, second = sorted(scores, key=lambda name: -scores[name])[:2]
    labeler.thresholds = {name: 10.0 for name in labeler.label_names} | {first: scores[first] - 1e-6, second: scores[second] / 0.75}
    return labeler, first, second


def test_suggest_mode_adds_the_confident_label_and_keeps_one_comment_for_the_rest(run_dir):
    from issuelab.github.labeling import SUGGESTION_MARKER
    from issuelab.policy import PolicyConfig

    text = ("app crash with traceback", "it fails with an exception error, broken; the docs page is wrong too")
    labeler, first, second = _suggesting_labeler(run_dir, text)
    suggesting = PolicyConfig(suggest=True, suggest_scale=0.5, skip_labeled=False)
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_issue(REPO, make_issue(1, *text))
        bot = GitHubLabeler(labeler, GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None), suggesting)
        decision = bot.label_issue(REPO, 1)
        assert decision.labels == [first] and [name for name, _ in decision.suggested] == [second]
        assert fake.posts_for(REPO, 1) == [[first]] and second not in fake.issue_labels(REPO, 1)  # suggested, not added
        (comment,) = fake.comments[(REPO, 1)]
        assert SUGGESTION_MARKER in comment["body"] and f"`{second}`" in comment["body"] and f"Added: `{first}`" in comment["body"]

        again = bot.label_issue(REPO, 1)  # a later run: the first label is there now, the second still suggested
        assert again.labels == [] and [name for name, _ in again.suggested] == [second]
        assert len(fake.comments[(REPO, 1)]) == 1 and [m for m, _, _ in fake.comment_writes] == ["POST", "PATCH"]
        assert "Added" not in fake.comments[(REPO, 1)][0]["body"]
        bot.label_issue(REPO, 1)  # nothing changed: the comment is not written again
        assert [m for m, _, _ in fake.comment_writes] == ["POST", "PATCH"]

        fake.issues[REPO][1]["labels"] = []  # a person removed the label the bot added
        fake.add_event(REPO, 1, "unlabeled", first)
        removed = bot.label_issue(REPO, 1)
        assert first not in removed.labels and first not in [name for name, _ in removed.suggested]
        assert fake.posts_for(REPO, 1) == [[first]] and len(fake.comments[(REPO, 1)]) == 1


def test_suggest_mode_suggests_what_min_labels_would_have_added_and_stays_quiet_without_suggestions(run_dir):
    from issuelab.data import Issue
    from issuelab.policy import PolicyConfig

    text = ("app crash with traceback", "it fails with an exception error, broken")
    labeler = Labeler.load(run_dir)
    scores = labeler.scores([Issue(1, *text)])[0]
    first = max(scores, key=scores.get)
    labeler.thresholds = {name: 10.0 for name in labeler.label_names} | {first: scores[first] / 0.75}  # below apply, above suggest
    with FakeGitHub(token=TOKEN) as fake:
        for number in (1, 2, 3):
            fake.add_issue(REPO, make_issue(number, *text))
        client = GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None)
        plain = GitHubLabeler(labeler, client, PolicyConfig(min_labels=1))
        assert plain.label_issue(REPO, 1).labels == [first]  # without suggestions, min_labels adds the top label
        bot = GitHubLabeler(labeler, client, PolicyConfig(suggest=True, min_labels=1))
        decision = bot.label_issue(REPO, 2)
        assert decision.action == "none" and [name for name, _ in decision.suggested] == [first]
        assert fake.posts_for(REPO, 2) == [] and len(fake.comments[(REPO, 2)]) == 1
        labeler.thresholds = {name: 10.0 for name in labeler.label_names}  # nothing reaches a suggest threshold
        quiet = bot.label_issue(REPO, 3)
        assert quiet.action == "none" and quiet.suggested == [] and (REPO, 3) not in fake.comments and fake.posts_for(REPO, 3) == []
