"""GitHub App authentication against a local stand-in for GitHub's app endpoints: JWT -> installation ->
installation token, cached, refreshed before it expires, never logged."""

from __future__ import annotations

import time

import pytest

from issuelab.errors import IssuelabError
from issuelab.github.app_auth import GitHubAppAuth
from issuelab.github.client import GitHubClient, GitHubError
from issuelab.github.labeling import GitHubLabeler
from issuelab.labeler import Labeler

from ..helpers.fake_github import FakeGitHub, make_issue

APP_ID = "424242"


@pytest.fixture(scope="module")
def app_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def app_github(public_key: str, token_ttl: float = 3600.0) -> FakeGitHub:
    fake = FakeGitHub(app=(APP_ID, public_key), token_ttl=token_ttl)
    fake.installations = {"acme/widgets": 7, "acme/gadgets": 7, "other/tool": 9}
    for repo in fake.installations:
        fake.add_issue(repo, make_issue(1, "crash with a traceback", "it fails with an exception"))
    return fake


def test_each_repository_is_labeled_with_its_installations_token(app_key, run_dir):
    private, public = app_key
    with app_github(public) as fake:
        auth = GitHubAppAuth(APP_ID, private, fake.url)
        client = GitHubClient(fake.url, token_for_repo=auth.token_for, log=lambda m: None)
        labeler = GitHubLabeler(Labeler.load(run_dir), client)
        for repo in ("acme/widgets", "acme/gadgets", "other/tool", "acme/widgets"):
            labeler.label_issue(repo, 1)
        assert all(fake.posts_for(repo, 1) for repo in fake.installations)
        token_requests = [path for method, path in fake.requests if path.endswith("/access_tokens")]
        assert token_requests == ["/app/installations/7/access_tokens", "/app/installations/9/access_tokens"]  # cached per installation
        assert "token=app" in repr(client) and "ghs_" not in repr(auth)


def test_a_token_close_to_expiry_is_replaced(app_key):
    private, public = app_key
    with app_github(public, token_ttl=302) as fake:
        auth = GitHubAppAuth(APP_ID, private, fake.url, refresh_margin=300)
        first = auth.token_for("acme/widgets")
        assert auth.token_for("acme/widgets") == first  # 302 s left: kept
        time.sleep(2.1)
        second = auth.token_for("acme/widgets")
        assert second != first
        client = GitHubClient(fake.url, token_for_repo=auth.token_for, log=lambda m: None)
        assert client.issue("acme/widgets", 1)["number"] == 1


def test_a_wrong_key_or_an_uninstalled_repository_is_a_clear_error(app_key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private, public = app_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()  # fmt: skip
    with app_github(public) as fake:
        with pytest.raises(GitHubError) as wrong:
            GitHubAppAuth(APP_ID, other, fake.url, max_retries=0).token_for("acme/widgets")
        assert wrong.value.status == 401 and "PRIVATE KEY" not in str(wrong.value)
        with pytest.raises(GitHubError) as missing:
            GitHubAppAuth(APP_ID, private, fake.url, max_retries=0).token_for("acme/nowhere")
        assert missing.value.status == 404 and "/repos/acme/nowhere/installation" in str(missing.value)
    with pytest.raises(IssuelabError, match="numeric id"):
        GitHubAppAuth("my-app", private)
    with pytest.raises(IssuelabError, match="not a PEM key"):
        GitHubAppAuth(APP_ID, "hunter2")


def test_serve_names_what_a_github_app_is_missing(cli, run_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("GITHUB_APP_ID", APP_ID)
    monkeypatch.delenv("GITHUB_APP_PRIVATE_KEY_PATH", raising=False)
    code, _, err = cli("serve", "--model", run_dir, "--state", tmp_path / "state.sqlite3")
    assert code == 2 and "GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH" in err
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    code, _, err = cli("serve", "--model", run_dir, "--state", tmp_path / "state.sqlite3")
    assert code == 2 and "missing.pem: cannot read the GitHub App private key" in err
