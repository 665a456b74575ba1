"""The label policy: one function decides what the GitHub side may add."""

from __future__ import annotations

import dataclasses

import numpy as np

from issuelab.config import PolicyConfig
from issuelab.github.events import issue_state
from issuelab.policy import IssueState, choose_labels, decide

NAMES = ["bug", "enhancement", "documentation", "ci/cd"]
THRESHOLDS = {"bug": 0.5, "enhancement": 0.6, "documentation": 0.4, "ci/cd": 0.5}
SCORES = {"bug": 0.9, "enhancement": 0.7, "documentation": 0.45, "ci/cd": 0.1}
POLICY = PolicyConfig(max_labels=3, min_labels=0)


def run(state=None, scores=SCORES, policy=POLICY, multi_label=True, aliases=None):
    return decide(state or IssueState(labels=[]), scores, NAMES, THRESHOLDS, multi_label, policy, aliases)


def test_labels_above_their_thresholds_highest_first():
    decision = run()
    assert (decision.action, decision.labels) == ("label", ["bug", "enhancement", "documentation"])
    assert decision.top_scores[0] == ("bug", 0.9) and len(decision.top_scores) == 4


def test_max_labels_caps_the_labels():
    assert run(policy=dataclasses.replace(POLICY, max_labels=1)).labels == ["bug"]


def test_default_label_when_nothing_passes_else_nothing():
    low = {name: 0.1 for name in NAMES}
    assert run(scores=low).action == "none" and run(scores=low).labels == []
    decision = run(scores=low, policy=dataclasses.replace(POLICY, default_label="documentation"))
    assert decision.labels == ["documentation"] and "default_label" in decision.reason


def test_min_labels_takes_the_top_label_before_the_default():
    low = {"bug": 0.2, "enhancement": 0.3, "documentation": 0.1, "ci/cd": 0.0}
    policy = dataclasses.replace(POLICY, min_labels=1, default_label="documentation")
    assert run(scores=low, policy=policy).labels == ["enhancement"]


def test_an_issue_with_a_managed_label_is_left_alone():
    decision = run(IssueState(labels=["Bug", "needs-triage"]))
    assert decision.action == "skip" and "already labeled (Bug)" in decision.reason
    assert run(IssueState(labels=["needs-triage"])).action == "label"  # an unmanaged label does not count
    assert run(IssueState(labels=["kind/bug"]), aliases={"kind/bug": "bug"}).action == "skip"  # an alias does
    unskipped = run(IssueState(labels=["bug"]), policy=dataclasses.replace(POLICY, skip_labeled=False))
    assert unskipped.labels == ["enhancement", "documentation"]  # present labels are not added again


def test_a_label_a_person_removed_is_never_added_back():
    state = IssueState(labels=[], removed_by_person={"bug"})
    decision = run(state)
    assert decision.labels == ["enhancement", "documentation"] and "not re-adding bug" in decision.reason
    only_bug = {"bug": 0.99, "enhancement": 0.0, "documentation": 0.0, "ci/cd": 0.0}
    policy = dataclasses.replace(POLICY, min_labels=1, default_label="bug")
    assert run(state, scores=only_bug, policy=policy).labels == ["enhancement"]  # min_labels fills in, never with bug


def test_removals_are_read_from_the_issue_events():
    events = [
        {"event": "labeled", "label": {"name": "bug"}, "actor": {"login": "maintainer", "type": "User"}},
        {"event": "unlabeled", "label": {"name": "bug"}, "actor": {"login": "maintainer", "type": "User"}},
        {"event": "unlabeled", "label": {"name": "ci/cd"}, "actor": {"login": "tidy[bot]", "type": "Bot"}},
    ]
    state = issue_state({"labels": [], "user": {"login": "alice", "type": "User"}}, events)
    assert state.removed_by_person == {"bug"}  # a bot's removal is not a person's decision


def test_bots_and_listed_authors_are_skipped():
    bot = issue_state({"labels": [], "user": {"login": "dependabot[bot]", "type": "Bot"}})
    assert run(bot).action == "skip" and "bot" in run(bot).reason
    assert run(bot, policy=dataclasses.replace(POLICY, skip_bots=False)).action == "label"
    listed = IssueState(labels=[], author="Release-Manager")
    assert run(listed, policy=dataclasses.replace(POLICY, skip_authors=["release-manager"])).action == "skip"


def test_dry_run_decides_the_same_and_says_so():
    decision = run(policy=dataclasses.replace(POLICY, dry_run=True))
    assert decision.labels == run().labels and decision.dry_run


def test_single_label_runs_take_the_top_label():
    assert run(multi_label=False).labels == ["bug"]


def test_the_github_side_takes_the_config_policy_or_the_run_s_with_dry_run_on_top():
    from issuelab.policy import resolve_policy

    run_policy, config_policy = PolicyConfig(max_labels=2), PolicyConfig(max_labels=5)
    assert resolve_policy(run_policy) is run_policy
    assert resolve_policy(run_policy, config_policy) is config_policy
    assert resolve_policy(run_policy, None, dry_run=True) == dataclasses.replace(run_policy, dry_run=True)
    assert not run_policy.dry_run


def test_a_label_without_a_threshold_gets_the_default():
    from issuelab.policy import DEFAULT_THRESHOLD, threshold_array

    assert threshold_array({"bug": 0.3}, ["bug", "docs"]).tolist() == [0.3, DEFAULT_THRESHOLD]


def test_choose_labels_applies_thresholds_and_policy():
    names = ["a", "b", "c", "d"]
    scores = np.array([0.9, 0.2, 0.7, 0.8])
    thresholds = np.array([0.5, 0.5, 0.5, 0.5])
    assert choose_labels(scores, names, thresholds, True, PolicyConfig(max_labels=2)) == ["a", "d"]
    assert choose_labels(scores, names, thresholds, True, PolicyConfig(max_labels=0)) == ["a", "d", "c"]
    low = np.array([0.1, 0.3, 0.2, 0.0])
    assert choose_labels(low, names, thresholds, True, PolicyConfig(min_labels=1)) == ["b"]
    assert choose_labels(low, names, thresholds, True, PolicyConfig(min_labels=0)) == []
    assert choose_labels(low, names, thresholds, False, PolicyConfig()) == ["b"]
