"""A small GitHub REST client: what fetch, init, the Action and the webhook service need.

Standard library only (urllib). Retries are bounded and explained:
- rate limits: 403/429 with `Retry-After`, or with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`,
  wait as long as GitHub says (a message names the wait), up to `max_wait` seconds per wait;
- 5xx answers, timeouts and dropped connections: exponential backoff with jitter.
The token (`GITHUB_TOKEN` or `GH_TOKEN`) is sent as a header and never appears in a message.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

from .._version import __version__
from ..errors import IssuelabError

DEFAULT_API_URL = "https://api.github.com"
REPO_PATTERN = re.compile(r"^(?!\.\.?/)[A-Za-z0-9_.-]+/(?!\.\.?$)[A-Za-z0-9_.-]+$")  # OWNER/NAME; never "." or ".."


class GitHubError(IssuelabError):
    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # a rate limit: seconds until GitHub takes requests again


def token_from_env(environ: dict[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or None


def check_repo(repo: str) -> str:
    if not REPO_PATTERN.match(repo or ""):
        raise IssuelabError(f"--repo {repo!r}: expected OWNER/NAME, e.g. nebari-dev/nebari")
    return repo


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def next_link(header: str | None) -> str | None:
    """The rel="next" URL of a `Link` header, if any."""
    for part in (header or "").split(","):
        match = re.match(r'\s*<([^>]+)>\s*;(.*)', part)
        if match and re.search(r'rel="?next"?', match.group(2)):
            return match.group(1)
    return None


class GitHubClient:
    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 6,
        max_wait: float = 900.0,
        backoff: float = 1.0,
        log: Callable[[str], None] = _stderr,
        sleep: Callable[[float], None] = time.sleep,
        token_for_repo: Callable[[str], str] | None = None,
    ):
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self._token = token  # kept private: never formatted into a message
        self._token_for_repo = token_for_repo  # a GitHub App: each repository's installation token (app_auth)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self.log = log
        self.sleep = sleep

    def __repr__(self) -> str:
        auth = "app" if self._token_for_repo else "set" if self._token else "none"
        return f"GitHubClient({self.api_url!r}, token={auth})"

    # -- transport -----------------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = path if path.startswith(("http://", "https://")) else f"{self.api_url}/{path.lstrip('/')}"
        if params:
            query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
            url += ("&" if "?" in url else "?") + query
        return url

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> tuple[Any, dict[str, str]]:
        """One API call with retries; returns (parsed JSON body, headers)."""
        url = self._url(path, params)
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": f"issuelab/{__version__}",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        where = f"{method} {urllib.parse.urlsplit(url).path}"
        token = self._token
        if self._token_for_repo:
            segments = urllib.parse.urlsplit(url).path.split("/")
            if "repos" not in segments or len(segments) < segments.index("repos") + 3:
                raise GitHubError(f"{where}: not a repository's endpoint, so no installation token applies")
            at = segments.index("repos")
            token = self._token_for_repo(f"{segments[at + 1]}/{segments[at + 2]}")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                    return (json.loads(raw) if raw else None), dict(response.headers.items())
            except urllib.error.HTTPError as e:
                response_headers = {k.lower(): v for k, v in e.headers.items()} if e.headers else {}
                message = _error_message(e)
                wait = self._rate_limit_wait(e.code, response_headers)
                if wait is not None:
                    if last or wait > self.max_wait:
                        raise GitHubError(f"{where}: GitHub rate limit; it resets in {wait:.0f} s. Try again later.", e.code, wait) from None
                    self.log(f"GitHub rate limit on {where}: waiting {wait:.0f} s (attempt {attempt + 1} of {self.max_retries})")
                    self.sleep(wait)
                    continue
                if e.code >= 500 and not last:
                    self._back_off(attempt, f"{where}: HTTP {e.code}")
                    continue
                raise GitHubError(_explain(where, e.code, message), e.code) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                if last:
                    raise GitHubError(f"{where}: cannot reach {self.api_url} ({reason}) after {attempt + 1} attempts") from None
                self._back_off(attempt, f"{where}: {reason}")
        raise AssertionError("unreachable")

    def _back_off(self, attempt: int, what: str) -> None:
        wait = self.backoff * 2**attempt * (0.5 + random.random() / 2)
        self.log(f"{what}; retrying in {wait:.1f} s (attempt {attempt + 1} of {self.max_retries})")
        self.sleep(wait)

    @staticmethod
    def _rate_limit_wait(status: int, headers: dict[str, str]) -> float | None:
        """Seconds to wait for a rate limit, or None when the answer is not one."""
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
                except (TypeError, ValueError):
                    return 60.0
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                return max(0.0, float(headers["x-ratelimit-reset"]) - time.time()) + 1.0
            except ValueError:
                return 60.0
        return 60.0 if status == 429 else None  # a 403 without rate-limit headers is a permission error

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Items of a list endpoint, page after page, following `Link: rel="next"`."""
        url: str | None = self._url(path, dict(params or {}, per_page=100))
        while url:
            items, headers = self.request("GET", url)
            if not isinstance(items, list):
                raise GitHubError(f"GET {urllib.parse.urlsplit(url).path}: expected a list, got {type(items).__name__}")
            yield from items
            url = next_link(headers.get("Link") or headers.get("link"))

    # -- endpoints -----------------------------------------------------------------------------

    def issues(self, repo: str, since: str | None = None) -> Iterator[dict[str, Any]]:
        """Every issue and pull request, oldest update first (so an interrupted walk resumes by `since`)."""
        params = {"state": "all", "sort": "updated", "direction": "asc", "since": since}
        return self.paginate(f"repos/{check_repo(repo)}/issues", params)

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        return self.request("GET", f"repos/{check_repo(repo)}/issues/{int(number)}")[0]

    def issue_events(self, repo: str, number: int) -> list[dict[str, Any]]:
        return list(self.paginate(f"repos/{check_repo(repo)}/issues/{int(number)}/events"))

    def labels(self, repo: str) -> list[dict[str, Any]]:
        return list(self.paginate(f"repos/{check_repo(repo)}/labels"))

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return list(self.paginate(f"repos/{check_repo(repo)}/issues/{int(number)}/comments"))

    def add_comment(self, repo: str, number: int, body: str) -> dict[str, Any]:
        return self.request("POST", f"repos/{check_repo(repo)}/issues/{int(number)}/comments", body={"body": body})[0]

    def edit_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        return self.request("PATCH", f"repos/{check_repo(repo)}/issues/comments/{int(comment_id)}", body={"body": body})[0]

    def add_labels(self, repo: str, number: int, labels: list[str]) -> list[str]:
        """Adds labels (never removes any); returns the issue's labels after."""
        result, _ = self.request("POST", f"repos/{check_repo(repo)}/issues/{int(number)}/labels", body={"labels": labels})
        return [label["name"] if isinstance(label, dict) else label for label in result or []]


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read() or b"{}").get("message", ""))
    except (ValueError, AttributeError, OSError):
        return ""


def _explain(where: str, status: int, message: str) -> str:
    detail = f" ({message})" if message else ""
    hints = {
        401: "the token was refused; set GITHUB_TOKEN (or GH_TOKEN) to a valid token",
        403: "the token lacks permission (issues: write to add labels, read to fetch)",
        404: "not found: check OWNER/NAME, and that the token can see the repository",
        410: "issues are disabled for this repository",
        422: "GitHub rejected the request",
    }
    return f"{where}: HTTP {status}{detail}: {hints.get(status, 'unexpected answer from GitHub')}"
