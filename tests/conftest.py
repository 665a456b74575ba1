"""Fixtures shared by every test: the toy config file, the CLI run in-process, no network but loopback,
and the slow tests left out unless asked for (`-m slow`, or any -m naming them)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from issuelab.cli import main

from .helpers import TOY_CONFIG


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


def pytest_collection_modifyitems(config, items):
    """Slow tests run only when the -m expression names them: `pytest -m "not torch"` stays fast."""
    if "slow" in (config.option.markexpr or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
