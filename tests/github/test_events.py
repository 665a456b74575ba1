"""One reader of GitHub's event payloads for the Action and the webhook service."""

from __future__ import annotations

import pytest

from issuelab.github.events import EventError, IssueTarget, issue_target

PAYLOAD = {"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "acme/widgets"}}


def test_an_issues_event_names_the_issue_to_label():
    assert issue_target("issues", PAYLOAD, ("opened",)) == IssueTarget("acme/widgets", 7)
    assert issue_target("issues", dict(PAYLOAD, action="edited"), ("opened", "edited")) == IssueTarget("acme/widgets", 7)


def test_other_events_and_actions_are_ignored_with_a_reason():
    assert issue_target("push", PAYLOAD, ("opened",)) == "event 'push' is not an issues event"
    assert issue_target("", PAYLOAD, ("opened",)) == "event '' is not an issues event"
    assert issue_target("issues", dict(PAYLOAD, action="closed"), ("opened", "reopened")) == "issues.closed is not one of: opened, reopened"


@pytest.mark.parametrize("payload", [
    {"action": "opened"},
    dict(PAYLOAD, issue={"number": "7"}),
    dict(PAYLOAD, repository={}),
    dict(PAYLOAD, repository={"full_name": "../.."}),  # never a path the client would request with the token
    dict(PAYLOAD, repository={"full_name": "acme/widgets/issues"}),
    ["not", "an", "object"],
])  # fmt: skip
def test_a_malformed_issues_event_is_an_error(payload):
    with pytest.raises(EventError):
        issue_target("issues", payload, ("opened",))
