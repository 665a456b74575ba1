"""A local OpenAI-compatible chat-completions server on 127.0.0.1 (real HTTP), for the real `openai` client.

Answers come from a function of (model, messages). It counts requests and answers, can add latency,
inject faults (status + headers, a delay past the client's timeout), and be killed mid-run (requests
in flight get no answer) and restarted on the same port.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .local_server import send_json, start_server


@dataclass
class Fault:
    status: int = 500  # 0: no status, just `delay` (a timeout for the client)
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    every: int = 0  # > 0: every n-th request instead of the next `times`
    delay: float = 0.0
    seen: int = 0


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class FakeOpenAI:
    def __init__(self, answer: Callable[[str, list[dict[str, Any]]], str], latency: float = 0.0):
        self.answer = answer
        self.latency = latency
        self.requests: list[tuple[str, list[dict[str, Any]]]] = []
        self.answered: list[tuple[str, list[dict[str, Any]]]] = []
        self.faults: list[Fault] = []
        self.faulted = 0  # requests answered by a fault
        self.lock = threading.Lock()
        self.dead = False
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(self, **kwargs) -> Fault:
        fault = Fault(**kwargs)
        self.faults.append(fault)
        return fault

    def start(self) -> FakeOpenAI:
        self.server = start_server(lambda handler, method: self._handle(handler), self.port)
        self.port = self.server.server_address[1]
        self.dead = False
        return self

    def kill(self) -> None:
        """Stops answering at once: requests in flight are dropped without an answer."""
        self.dead = True
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self.dead:
            self.kill()

    def _fault(self) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                fault.seen += 1
                if fault.every:
                    if fault.seen % fault.every == 0:
                        return fault
                elif fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = json.loads(handler.rfile.read(length) or b"{}")
        if not handler.path.endswith("/chat/completions"):
            send_json(handler, 404, {"error": {"message": "not found"}})
            return
        model, messages = request.get("model", ""), request.get("messages", [])
        with self.lock:
            self.requests.append((model, messages))
        fault = self._fault()
        if fault is not None:
            with self.lock:
                self.faulted += 1
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status:
            send_json(handler, fault.status, {"error": {"message": "injected fault"}}, fault.headers)
            return
        if self.latency:
            time.sleep(self.latency)
        if self.dead:
            handler.close_connection = True
            return
        text = self.answer(model, messages)
        prompt_tokens = sum(tokens(m.get("content") or "") for m in messages) + 8
        body = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens(text),
                      "total_tokens": prompt_tokens + tokens(text)},
        }  # fmt: skip
        send_json(handler, 200, body)
        with self.lock:
            self.answered.append((model, messages))


def issue_title(messages: list[dict[str, Any]]) -> str:
    """The quoted issue title in issuelab's teacher prompt."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    start = user.index("Issue title: <<<") + len("Issue title: <<<")
    return user[start : user.index(">>>", start)]
