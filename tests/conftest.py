from __future__ import annotations

import ipaddress
import random
import socket
from pathlib import Path

import pytest

from issuelab.cli import main
from issuelab.data import Issue

TOY_CONFIG = """\
[project]
repo = "acme/widgets"

[labels]
bug = "A reported error or unexpected behavior in the software."
enhancement = "A request for a new feature or an improvement to an existing one."
documentation = "Issues related to improving or expanding the documentation."
"ci/cd" = "Issues related to continuous integration and deployment pipelines."

[train]
engine = "tfidf"
seed = 0
multi_label = "auto"

[policy]
max_labels = 3
min_labels = 1
"""

# Words that signal each label; issues mix them with shared filler, so the task is learnable but not trivial.
SIGNALS = {
    "bug": ["crash", "error", "traceback", "broken", "fails", "exception"],
    "enhancement": ["feature", "support", "add", "option", "would", "propose"],
    "documentation": ["docs", "readme", "typo", "tutorial", "docstring", "guide"],
    "ci/cd": ["workflow", "pipeline", "actions", "deploy", "runner", "build"],
}
FILLER = ["the", "widget", "when", "using", "version", "please", "thanks", "we", "it", "on", "linux", "config"]


def make_issues(n: int, seed: int = 0, multi_label: bool = True) -> list[Issue]:
    rng = random.Random(seed)
    names = list(SIGNALS)
    issues = []
    for i in range(n):
        k = rng.choice([1, 1, 2]) if multi_label else 1
        labels = sorted(rng.sample(names, k), key=names.index)
        words = [w for label in labels for w in rng.sample(SIGNALS[label], 3)] + rng.sample(FILLER, 6)
        rng.shuffle(words)
        title = " ".join(words[:4])
        body = " ".join(words[4:]) if i % 7 else None  # some issues have no body
        issues.append(Issue(id=i + 1, title=title, body=body, labels=labels))
    return issues


@pytest.fixture
def toy_config(tmp_path: Path) -> Path:
    path = tmp_path / "issuelab.toml"
    path.write_text(TOY_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def cli(capsys):
    """Runs the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


class NetworkUsed(RuntimeError):  # not an OSError: clients do not retry it, the test fails at once
    pass


def _loopback(host) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", None)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests talk to local servers only: resolving or connecting anywhere but loopback fails."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise NetworkUsed(f"tests may not reach the network ({address[0]})")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host if not isinstance(host, bytes) else host.decode()):
            raise NetworkUsed(f"tests may not reach the network ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
