"""fetch, init --repo and the GitHub client, against a local fake GitHub over real HTTP."""

from __future__ import annotations

import time
import tomllib

import pytest

from issuelab.config import load_config
from issuelab.data import iter_jsonl
from issuelab.github.client import GitHubClient, GitHubError, next_link
from issuelab.github.fetch import fetch_issues

from ..helpers.fake_github import FakeGitHub, make_issue

REPO = "acme/widgets"
TOKEN = "ghp_test_token_never_printed"


def populated(fake: FakeGitHub, n: int = 250, prs: int = 20) -> FakeGitHub:
    for k in range(1, n + prs + 1):
        labels = ["bug"] if k % 3 == 0 else ["enhancement"] if k % 3 == 1 else []
        updated = f"2026-01-{1 + k % 28:02d}T00:00:{k % 60:02d}Z"
        fake.add_issue(REPO, make_issue(k, f"issue {k}", f"body {k}", labels, updated_at=updated, pull_request=k > n))
    return fake


def client(fake: FakeGitHub, **kwargs) -> GitHubClient:
    waits: list[float] = []
    c = GitHubClient(fake.url, TOKEN, backoff=0.01, log=lambda m: None, sleep=waits.append, **kwargs)
    c.waits = waits
    return c


def records(path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


def test_next_link_parses_github_link_headers():
    header = '<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last"'
    assert next_link(header) == "https://api.github.com/repositories/1/issues?page=2"
    assert next_link('<https://x/issues?page=1>; rel="prev"') is None
    assert next_link(None) is None


def test_fetch_paginates_skips_prs_and_maps_fields(tmp_path):
    with populated(FakeGitHub(token=TOKEN)) as fake:
        counts = fetch_issues(client(fake), REPO, tmp_path / "issues.jsonl", progress=False)
        pages = [path for method, path in fake.requests if "/issues?" in path]
    assert len(pages) == 3  # 270 items, 100 per page
    assert counts == {"new": 250, "updated": 0, "skipped_prs": 20, "total": 250}
    rows = records(tmp_path / "issues.jsonl")
    assert sorted(r["number"] for r in rows) == list(range(1, 251))
    first = next(r for r in rows if r["number"] == 3)
    assert first == {
        "id": 3, "title": "issue 3", "body": "body 3", "labels": ["bug"], "repo": REPO, "number": 3,
        "url": "https://github.com/acme/widgets/issues/3", "author": "alice", "state": "open",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-04T00:00:03Z", "source": "github",
    }  # fmt: skip


def test_fetch_include_prs_marks_them(tmp_path):
    with populated(FakeGitHub(), n=5, prs=2) as fake:
        counts = fetch_issues(client(fake), REPO, tmp_path / "all.jsonl", include_prs=True, progress=False)
    assert counts["total"] == 7
    assert [r.get("pull_request", False) for r in records(tmp_path / "all.jsonl")].count(True) == 2


def test_incremental_fetch_updates_in_place_and_never_duplicates(tmp_path):
    out = tmp_path / "issues.jsonl"
    with populated(FakeGitHub(), n=120, prs=0) as fake:
        fetch_issues(client(fake), REPO, out, progress=False)
        before = records(out)
        fake.issues[REPO][7].update(title="renamed", labels=[{"name": "question"}], updated_at="2026-02-01T00:00:00Z")
        fake.add_issue(REPO, make_issue(500, "brand new", None, updated_at="2026-02-02T00:00:00Z"))
        fake.requests.clear()
        counts = fetch_issues(client(fake), REPO, out, progress=False)
        since = [path for _, path in fake.requests if "since=" in path]
    assert since and "since=2026-01-28" in since[0]  # asked only for what changed after the newest update
    assert counts == {"new": 1, "updated": 1, "skipped_prs": 0, "total": 121}
    after = records(out)
    assert [r["number"] for r in after] == [r["number"] for r in before] + [500]  # order kept, new appended
    assert next(r for r in after if r["number"] == 7)["title"] == "renamed"
    assert len({r["number"] for r in after}) == len(after)


def test_rate_limits_and_server_errors_are_survived_with_nothing_lost(tmp_path):
    with populated(FakeGitHub(token=TOKEN), n=230, prs=0) as fake:
        reset = str(int(time.time()) + 30)
        fake.fail(status=403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, path_contains="/issues")
        fake.fail(status=429, headers={"Retry-After": "7"}, path_contains="/issues")
        fake.fail(status=502, times=2, path_contains="/issues")
        fake.fail(status=0, times=1, path_contains="/issues")  # a dropped connection
        c = client(fake)
        counts = fetch_issues(c, REPO, tmp_path / "issues.jsonl", progress=False)
    assert counts["total"] == 230 and counts["new"] == 230
    assert sorted(r["number"] for r in records(tmp_path / "issues.jsonl")) == list(range(1, 231))
    assert 25 <= c.waits[0] <= 32  # until X-RateLimit-Reset
    assert c.waits[1] == 7  # Retry-After
    assert len(c.waits) == 5 and all(w < 1 for w in c.waits[2:])  # backoff for 502, 502, dropped connection


def test_retries_are_bounded_and_errors_name_the_request(tmp_path):
    with populated(FakeGitHub(), n=5, prs=0) as fake:
        fake.fail(status=503, times=99)
        with pytest.raises(GitHubError, match=r"GET /repos/acme/widgets/issues: HTTP 503"):
            fetch_issues(client(fake, max_retries=3), REPO, tmp_path / "x.jsonl", progress=False)
        assert len(fake.requests) == 4
        fake.faults.clear()
        fake.fail(status=403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 7200)})
        with pytest.raises(GitHubError, match="rate limit; it resets in"):  # longer than max_wait: stop, say when
            fetch_issues(client(fake, max_wait=600), REPO, tmp_path / "x.jsonl", progress=False)
    assert not (tmp_path / "x.jsonl").exists()


def test_interrupted_fetch_leaves_the_previous_file_intact(tmp_path):
    out = tmp_path / "issues.jsonl"
    with populated(FakeGitHub(), n=250, prs=0) as fake:
        fetch_issues(client(fake), REPO, out, since="2026-01-01T00:00:00Z", progress=False)
        saved = out.read_bytes()
        for issue in fake.issues[REPO].values():
            issue["updated_at"] = "2026-03-01T00:00:00Z"
        fake.fail(status=404, path_contains="/issues", every=2)  # the second page fails for good
        with pytest.raises(GitHubError, match="HTTP 404"):
            fetch_issues(client(fake), REPO, out, progress=False)
    assert out.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["issues.jsonl"]  # no temporary file left behind


def test_fetch_refuses_an_output_file_of_another_kind(tmp_path, cli):
    out = tmp_path / "mixed.jsonl"
    out.write_text('{"id": 1, "title": "t", "body": null, "labels": []}\n')
    with populated(FakeGitHub(), n=3, prs=0) as fake:
        code, _, err = cli("fetch", "--repo", REPO, "--out", out, "--api-url", fake.url)
    assert code == 2 and "mixed.jsonl:1: not a line written by `issuelab fetch`" in err


def test_fetch_cli_sends_the_token_and_never_prints_it(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with populated(FakeGitHub(token=TOKEN), n=30, prs=3) as fake:
        code, out, err = cli("fetch", "--repo", REPO, "--out", tmp_path / "i.jsonl", "--api-url", fake.url)
        assert code == 0 and "30 issues (30 new, 0 updated, 3 pull requests skipped)" in out
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN + "-wrong")
        code, out2, err2 = cli("fetch", "--repo", REPO, "--out", tmp_path / "j.jsonl", "--api-url", fake.url)
    assert code == 2 and "HTTP 401" in err2 and "GITHUB_TOKEN" in err2
    assert TOKEN not in out + err + out2 + err2
    assert TOKEN not in repr(GitHubClient(fake.url, TOKEN))


def test_fetch_rejects_a_malformed_repo(cli, tmp_path):
    code, _, err = cli("fetch", "--repo", "not a repo", "--out", tmp_path / "x.jsonl", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "expected OWNER/NAME" in err


def test_init_repo_writes_the_repository_labels(tmp_path, cli):
    with FakeGitHub() as fake:
        fake.labels[REPO] = [
            {"name": "type: bug 🐛", "description": "Something is broken"},
            {"name": "docs", "description": None},
            {"name": 'say "hi"\\', "description": "quotes and a backslash"},
            {"name": "a, b", "description": "a comma cannot be a label"},
        ] + [{"name": f"area-{k}", "description": f"area {k}"} for k in range(120)]  # two pages
        code, out, err = cli("init", tmp_path / "issuelab.toml", "--repo", REPO, "--api-url", fake.url)
    assert code == 0, err
    assert "123 labels of acme/widgets" in out and "a, b" in err
    config = load_config(tmp_path / "issuelab.toml")
    assert config.project.repo == REPO
    assert config.label_pairs[:3] == [("type: bug 🐛", "Something is broken"), ("docs", ""), ('say "hi"\\', "quotes and a backslash")]
    assert len(config.labels) == 123


def test_init_without_repo_writes_the_starter_labels(tmp_path, cli):
    code, _, _ = cli("init", tmp_path / "c.toml")
    assert code == 0
    data = tomllib.loads((tmp_path / "c.toml").read_text())
    assert list(data["labels"]) == ["bug", "enhancement", "documentation", "question"]
    assert data["policy"]["skip_bots"] is True


def test_repository_labels_as_training_data_through_aliases(tmp_path, cli):
    """fetch -> import with [aliases] and --labeled-only: the repository's labels become training labels."""
    config = tmp_path / "issuelab.toml"
    config.write_text('[labels]\nbug = "broken"\nenhancement = "new"\n\n[aliases]\n"type: bug 🐛" = "bug"\n"kind/feature" = "enhancement"\n')
    with FakeGitHub() as fake:
        fake.add_issue(REPO, make_issue(1, labels=["type: bug 🐛", "area/ui"]))
        fake.add_issue(REPO, make_issue(2, labels=["kind/feature"]))
        fake.add_issue(REPO, make_issue(3, labels=["area/ui"]))  # nothing managed: not training data
        fake.add_issue(REPO, make_issue(4, labels=[]))
        assert cli("fetch", "--repo", REPO, "--out", tmp_path / "raw.jsonl", "--api-url", fake.url)[0] == 0
    code, out, err = cli("import", "--config", config, tmp_path / "raw.jsonl", "--drop-unknown", "--labeled-only",
                         "--out", tmp_path / "labeled.jsonl")  # fmt: skip
    assert code == 0, err
    rows = records(tmp_path / "labeled.jsonl")
    assert [(r["id"], r["labels"]) for r in rows] == [(1, ["bug"]), (2, ["enhancement"])]
    assert rows[0]["url"].endswith("/issues/1") and rows[0]["author"] == "alice"


def test_config_aliases_must_name_a_label(tmp_path):
    from issuelab.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[labels]\nbug = "x"\n[aliases]\n"kind/bug" = "bugs"\n')
    with pytest.raises(ConfigError, match=r"\[aliases\] 'kind/bug' = 'bugs': the target must be a label"):
        load_config(path)


def test_client_error_messages_explain_the_status(tmp_path):
    with FakeGitHub() as fake:
        with pytest.raises(GitHubError, match="404.*check OWNER/NAME"):
            client(fake).labels("nobody/nothing")
