"""A real SMTP server on a local port (aiosmtpd, in a thread of its own) that keeps every message it accepted,
parsed, for the mail tests to read back. `gate` holds each message before the server's `250` while cleared: a
client that goes away meanwhile (a worker killed) never gets the `250`, and the message is not kept, as a real
server drops a mail whose DATA was not acknowledged."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class _Keeper:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        self.server.arrived.set()
        # a threading.Event (the test sets it from its own thread); a lost connection cancels this coroutine
        while not self.server.gate.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.server.lock:
            self.server.messages.append(message)
        return "250 OK"


class MailServer:
    """`start()` / `stop()` on one port (restartable: the "server down" test); `messages` as accepted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()  # some DATA came in (held or not)
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(_Keeper(self), hostname="127.0.0.1", port=self.port, ready_timeout=30)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)
