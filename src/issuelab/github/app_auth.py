"""GitHub App authentication, for a service that labels the repositories of an organisation.

The app's private key signs a short JWT (RS256, with PyJWT: no hand-written crypto); with it the service
looks up the installation of a repository (`GET /repos/OWNER/NAME/installation`) and asks for that
installation's access token (`POST /app/installations/ID/access_tokens`). Tokens last an hour: each is
cached and replaced `refresh_margin` seconds before it expires. The key and the tokens are never logged.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import IssuelabError
from .client import GitHubClient


class GitHubAppAuth:
    def __init__(self, app_id: str, private_key: str, api_url: str | None = None, *, refresh_margin: float = 300.0,
                 clock: Callable[[], float] = time.time, **client_options):  # fmt: skip
        try:
            import jwt  # noqa: F401  (PyJWT, with its 'crypto' extra for RS256)
        except ImportError:
            raise IssuelabError("GitHub App authentication needs the 'serve' extra: pip install 'issuelab[serve]'") from None
        if not str(app_id).strip().isdigit():
            raise IssuelabError(f"GitHub App id {app_id!r}: expected the app's numeric id (its settings page shows it)")
        if "PRIVATE KEY" not in private_key:
            raise IssuelabError("the GitHub App private key is not a PEM key (download one from the app's settings page)")
        self.app_id = str(app_id).strip()
        self._private_key = private_key
        self.api_url = api_url
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.client_options = client_options
        self._installations: dict[str, int] = {}
        self._tokens: dict[int, tuple[str, float]] = {}  # installation -> (token, expires at)
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(cls, app_id: str, key_path: str | Path, api_url: str | None = None, **options) -> GitHubAppAuth:
        try:
            key = Path(key_path).read_text(encoding="utf-8")
        except OSError as e:
            raise IssuelabError(f"{key_path}: cannot read the GitHub App private key ({e.strerror})") from None
        return cls(app_id, key, api_url, **options)

    def __repr__(self) -> str:
        return f"GitHubAppAuth(app_id={self.app_id!r}, installations={len(self._installations)})"

    def app_jwt(self) -> str:
        """A JWT for the app itself: issued a minute in the past (clock drift), valid nine minutes."""
        import jwt

        now = int(self.clock())
        return jwt.encode({"iat": now - 60, "exp": now + 540, "iss": self.app_id}, self._private_key, algorithm="RS256")

    def _as_app(self) -> GitHubClient:
        return GitHubClient(self.api_url, self.app_jwt(), **self.client_options)

    def token_for(self, repo: str) -> str:
        """The access token of the installation that covers `repo` (cached until shortly before it expires)."""
        with self._lock:
            if repo not in self._installations:
                installation, _ = self._as_app().request("GET", f"repos/{repo}/installation")
                self._installations[repo] = int(installation["id"])
            installation_id = self._installations[repo]
            token, expires = self._tokens.get(installation_id, ("", 0.0))
            if expires - self.clock() <= self.refresh_margin:
                answer, _ = self._as_app().request("POST", f"app/installations/{installation_id}/access_tokens", body={})
                token = answer["token"]
                expires = dt.datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00")).timestamp()
                self._tokens[installation_id] = (token, expires)
            return token
