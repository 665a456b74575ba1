"""A local server that speaks the parts of GitHub's REST API issuelab uses, over real HTTP on 127.0.0.1.

Endpoints: list issues (state, since, sort=updated, direction, per_page, page; `Link` pagination;
pull requests included as GitHub does), one issue, an issue's events, add labels, list labels.
It records every request and every label POST, checks the bearer token when one is set, and can
inject faults: status codes with headers (rate limits, 5xx) and dropped connections. As a GitHub App's
host (`app=(app id, public key PEM)`): a repository's installation and installation access tokens, for
a JWT signed by the app's key; then only unexpired installation tokens are accepted.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .local_server import send_json, start_server


@dataclass
class Fault:
    status: int = 502  # 0: drop the connection without an answer
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str = ""  # "" matches any
    path_contains: str = ""
    every: int = 0  # > 0: fail every n-th matching request instead of the next `times`
    seen: int = 0


def make_issue(number: int, title: str = "", body: str | None = "", labels=(), user: str = "alice", user_type: str = "User",
               updated_at: str = "2026-01-01T00:00:00Z", pull_request: bool = False, state: str = "open") -> dict[str, Any]:  # fmt: skip
    issue = {
        "number": number,
        "title": title or f"issue {number}",
        "body": body,
        "labels": [{"name": name, "color": "ededed"} for name in labels],
        "user": {"login": user, "type": user_type},
        "state": state,
        "html_url": f"https://github.com/acme/widgets/issues/{number}",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated_at,
    }
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/acme/widgets/pulls/{number}"}
    return issue


class FakeGitHub:
    def __init__(self, token: str | None = None, auto_issue=None, app: tuple[str, str] | None = None, token_ttl: float = 3600.0):
        self.token = token
        self.app = app  # (app id, public key PEM): GitHub App mode
        self.token_ttl = token_ttl
        self.installations: dict[str, int] = {}  # repo -> installation id
        self.installation_tokens: dict[str, tuple[int, float]] = {}  # token -> (installation, expires at)
        self.auto_issue = auto_issue  # number -> issue dict, for issues not added (load tests)
        self.issues: dict[str, dict[int, dict[str, Any]]] = {}
        self.events: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.labels: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.label_posts: list[tuple[str, int, list[str]]] = []
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (repo, number) -> its comments
        self.comment_writes: list[tuple[str, str, int]] = []  # (method, repo, comment id)
        self.faults: list[Fault] = []
        self.latency = 0.0  # seconds each answer waits: a slow GitHub
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- set-up --------------------------------------------------------------------------------

    def add_issue(self, repo: str, issue: dict[str, Any]) -> None:
        self.issues.setdefault(repo, {})[issue["number"]] = issue

    def add_event(self, repo: str, number: int, event: str, label: str, actor: str = "maintainer", actor_type: str = "User") -> None:
        self.events.setdefault((repo, number), []).append(
            {"event": event, "label": {"name": label}, "actor": {"login": actor, "type": actor_type}}
        )

    def fail(self, **kwargs) -> Fault:
        fault = Fault(**kwargs)
        self.faults.append(fault)
        return fault

    def issue_labels(self, repo: str, number: int) -> list[str]:
        return [label["name"] for label in self.issues[repo][number]["labels"]]

    def posts_for(self, repo: str, number: int) -> list[list[str]]:
        return [labels for r, n, labels in self.label_posts if (r, n) == (repo, number)]

    # -- server --------------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        self.server = start_server(self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- handling ------------------------------------------------------------------------------

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if (fault.method and fault.method != method) or fault.path_contains not in path:
                    continue
                fault.seen += 1
                if fault.every:
                    return fault if fault.seen % fault.every == 0 else None
                if fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        path, query = parts.path, dict(urllib.parse.parse_qsl(parts.query))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, handler.path))
        if self.latency:
            time.sleep(self.latency)
        fault = self._fault_for(method, path)
        if fault is not None:
            if fault.status == 0:
                handler.close_connection = True
                handler.connection.close()
                return
            send_json(handler, fault.status, {"message": "injected fault"}, fault.headers)
            return
        segments = path.strip("/").split("/")
        if self.app:
            if self._app_endpoint(handler, method, segments):
                return
            granted = self.installation_tokens.get(handler.headers.get("Authorization", "").removeprefix("Bearer "))
            if granted is None or granted[1] < time.time() or len(segments) < 3 or self.installations.get(f"{segments[1]}/{segments[2]}") != granted[0]:
                send_json(handler, 401, {"message": "Bad credentials"})
                return
        elif self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            send_json(handler, 401, {"message": "Bad credentials"})
            return
        if len(segments) < 3 or segments[0] != "repos":
            send_json(handler, 404, {"message": "Not Found"})
            return
        repo, rest = f"{segments[1]}/{segments[2]}", segments[3:]
        if repo not in self.issues and repo not in self.labels and self.auto_issue is None:
            send_json(handler, 404, {"message": "Not Found"})
            return
        if method == "PATCH" and len(rest) == 3 and rest[:2] == ["issues", "comments"] and rest[2].isdigit():
            self._edit_comment(handler, repo, int(rest[2]), json.loads(body or b"{}"))
        elif method == "GET" and rest == ["issues"]:
            self._list(handler, self._issue_list(repo, query), query)
        elif method == "GET" and rest == ["labels"]:
            self._list(handler, self.labels.get(repo, []), query)
        elif len(rest) >= 2 and rest[0] == "issues" and rest[1].isdigit():
            number = int(rest[1])
            issue = self._get_issue(repo, number)
            if issue is None:
                send_json(handler, 404, {"message": "Not Found"})
            elif method == "GET" and len(rest) == 2:
                send_json(handler, 200, issue)
            elif method == "GET" and rest[2:] == ["events"]:
                self._list(handler, self.events.get((repo, number), []), query)
            elif method == "GET" and rest[2:] == ["comments"]:
                self._list(handler, self.comments.get((repo, number), []), query)
            elif method == "POST" and rest[2:] == ["comments"]:
                with self.lock:
                    comment = {"id": 1000 + sum(map(len, self.comments.values())), "body": json.loads(body or b"{}")["body"], "user": {"login": "issuelab[bot]"}}
                    self.comments.setdefault((repo, number), []).append(comment)
                    self.comment_writes.append(("POST", repo, comment["id"]))
                send_json(handler, 201, comment)
            elif method == "POST" and rest[2:] == ["labels"]:
                names = json.loads(body or b"{}").get("labels", [])
                with self.lock:
                    self.label_posts.append((repo, number, list(names)))
                    present = {label["name"] for label in issue["labels"]}
                    issue["labels"] += [{"name": n, "color": "ededed"} for n in names if n not in present]
                    labels = list(issue["labels"])
                send_json(handler, 200, labels)
            else:
                send_json(handler, 404, {"message": "Not Found"})
        else:
            send_json(handler, 404, {"message": "Not Found"})

    def _app_endpoint(self, handler: BaseHTTPRequestHandler, method: str, segments: list[str]) -> bool:
        """The endpoints a GitHub App calls with its JWT; False for any other path."""
        installation_lookup = method == "GET" and len(segments) == 4 and segments[0] == "repos" and segments[3] == "installation"
        token_request = method == "POST" and len(segments) == 4 and segments[:2] == ["app", "installations"] and segments[3] == "access_tokens"
        if not (installation_lookup or token_request):
            return False
        import jwt

        try:
            claims = jwt.decode(handler.headers.get("Authorization", "").removeprefix("Bearer "), self.app[1], algorithms=["RS256"])
            assert str(claims["iss"]) == self.app[0] and claims["exp"] - claims["iat"] <= 600
        except Exception:
            send_json(handler, 401, {"message": "A JSON web token could not be decoded"})
            return True
        if installation_lookup:
            installation = self.installations.get(f"{segments[1]}/{segments[2]}")
            if installation:
                send_json(handler, 200, {"id": installation})
            else:
                send_json(handler, 404, {"message": "Not Found"})
            return True
        with self.lock:
            token = f"ghs_installation_{len(self.installation_tokens) + 1}"
            expires = time.time() + self.token_ttl
            self.installation_tokens[token] = (int(segments[2]), expires)
        stamp = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        send_json(handler, 201, {"token": token, "expires_at": stamp})
        return True

    def _edit_comment(self, handler: BaseHTTPRequestHandler, repo: str, comment_id: int, payload: dict[str, Any]) -> None:
        with self.lock:
            found = [c for (r, _), comments in self.comments.items() if r == repo for c in comments if c["id"] == comment_id]
            if found:
                found[0]["body"] = payload["body"]
                self.comment_writes.append(("PATCH", repo, comment_id))
        send_json(handler, 200, found[0]) if found else send_json(handler, 404, {"message": "Not Found"})

    def _get_issue(self, repo: str, number: int) -> dict[str, Any] | None:
        with self.lock:
            issue = self.issues.get(repo, {}).get(number)
            if issue is None and self.auto_issue is not None:
                issue = self.auto_issue(number)
                self.issues.setdefault(repo, {})[number] = issue
            return issue

    def _issue_list(self, repo: str, query: dict[str, str]) -> list[dict[str, Any]]:
        issues = list(self.issues.get(repo, {}).values())
        if query.get("state", "open") != "all":
            issues = [i for i in issues if i["state"] == query.get("state", "open")]
        if query.get("since"):
            issues = [i for i in issues if i["updated_at"] >= query["since"]]
        if query.get("sort") == "updated":
            issues.sort(key=lambda i: (i["updated_at"], i["number"]), reverse=query.get("direction", "desc") == "desc")
        else:
            issues.sort(key=lambda i: i["number"], reverse=True)
        return issues

    def _list(self, handler: BaseHTTPRequestHandler, items: list[Any], query: dict[str, str]) -> None:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            base = f"{self.url}{urllib.parse.urlsplit(handler.path).path}"
            last = (len(items) + per_page - 1) // per_page
            links = [(dict(query, page=str(page + 1)), "next"), (dict(query, page=str(last)), "last")]
            headers["Link"] = ", ".join(f'<{base}?{urllib.parse.urlencode(q)}>; rel="{rel}"' for q, rel in links)
        send_json(handler, 200, chunk, headers)
