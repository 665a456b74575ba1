"""issuelab on GitHub: `client` (the REST client), `fetch` (issues into dataset JSONL), `events` (the
one reader of event payloads), `labeling` (one issue labeled under the policy), `action` (the GitHub
Action's step, and the one writer of job summaries and step outputs), `serve` (the webhook service)."""

ISSUE_ACTIONS = ("opened", "edited", "reopened")  # the `issues` event actions issuelab can label on
