"""A small fake of Twilio's REST API (Messages only) for tests, on 127.0.0.1 with an ephemeral port.

It answers `POST /2010-04-01/Accounts/{sid}/Messages.json` as Twilio does: HTTP basic auth must be
`sid:token`, the form carries `To`, `From`, `Body`, and a 201 JSON message resource comes back. It can be
told to fail the next requests (500, or a Twilio-style 400 error), and to hold its answers (`gate` cleared: the
message is taken, as Twilio takes it once the request is in, but the answer waits; a client killed meanwhile never
hears it). `GET .../Messages.json?To=&From=` lists the messages taken, newest first, as Twilio's list does.
Point the real client at `base_url`:
`client.api.base_url = fake.base_url`. Use the `fake_twilio` fixture (import it into a conftest).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-" + "5" * 16
_PATH_RE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-fA-F]{32})/Messages\.json$")
_ERRORS = {
    400: {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400},
    401: {"code": 20003, "message": "Authenticate", "status": 401},
    404: {"code": 20404, "message": "The requested resource was not found", "status": 404},
    500: {"code": 20500, "message": "An internal server error has occurred", "status": 500},
}


@dataclass(frozen=True)
class FakeMessage:
    """One request the fake received; `status` is the HTTP status it answered."""

    sid: str  # the message sid ("SM..."), empty when refused
    account_sid: str
    to: str
    from_: str
    body: str
    status: int


class FakeTwilio:
    """The server and what it saw. Thread-safe: the handler runs in the server's threads."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._requests: list[FakeMessage] = []
        self._failures: list[int] = []
        self._closed = False
        self.gate = threading.Event()  # cleared: answers to accepted messages wait until it is set again
        self.gate.set()
        self.held = threading.Event()  # some answer is being held
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def server_env(self, from_number: str) -> dict[str, str]:
        """The settings that send a server's texts here, through the real twilio client."""
        return {
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM_NUMBER": from_number,
            "TWILIO_API_BASE_URL": self.base_url,
        }

    @property
    def requests(self) -> list[FakeMessage]:
        """Every request received, refused ones included."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[FakeMessage]:
        """The messages accepted (answered 201)."""
        return [r for r in self.requests if r.status == 201]

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` requests with `status` and a Twilio-style error body."""
        with self._lock:
            self._failures.extend([status] * n)

    def start(self) -> FakeTwilio:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, account_sid: str, form: dict[str, str], auth_ok: bool) -> tuple[int, dict[str, Any]]:
        """The status and JSON for one request; records it."""
        with self._lock:
            status = self._failures.pop(0) if self._failures else 201
        if not auth_ok:
            status = 401
        sid = "SM" + secrets.token_hex(16) if status == 201 else ""
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        with self._lock:
            self._requests.append(FakeMessage(sid, account_sid, to, from_, body, status))
        if status != 201:
            error = _ERRORS.get(status, {"code": 20001, "message": "Error", "status": status})
            return status, {**error, "more_info": f"https://www.twilio.com/docs/errors/{error['code']}"}
        return 201, _message_resource(sid, account_sid, to, from_, body)

    def _listed(self, query: dict[str, str]) -> dict[str, Any]:
        """A page of the accepted messages matching `To` and `From`, newest first."""
        found = [
            _message_resource(m.sid, m.account_sid, m.to, m.from_, m.body)
            for m in reversed(self.messages)
            if m.to == query.get("To", m.to) and m.from_ == query.get("From", m.from_)
        ]
        size = int(query.get("PageSize") or 50)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        return {
            "messages": found[:size],
            "page": 0,
            "page_size": size,
            "uri": uri,
            "next_page_uri": None,
            "first_page_uri": uri,
            "previous_page_uri": None,
            "start": 0,
            "end": len(found[:size]),
        }


def _message_resource(sid: str, account_sid: str, to: str, from_: str, body: str) -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC), usegmt=True)
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
    return {
        "sid": sid,
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "status": "queued",
        "to": to,
        "from": from_,
        "body": body,
        "direction": "outbound-api",
        "num_segments": "1",
        "num_media": "0",
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "error_message": None,
        "messaging_service_sid": None,
        "date_created": now,
        "date_updated": now,
        "date_sent": None,
        "uri": uri,
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
    }


def _handler_for(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            match = _PATH_RE.match(self.path)
            if not match:
                self._reply(404, {**_ERRORS[404], "more_info": ""})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            status, payload = fake._answer(match["sid"], form, self._auth_ok(match["sid"]))
            if status == 201 and not fake.gate.is_set():
                fake.held.set()
                fake.gate.wait(120)
            try:
                self._reply(status, payload)
            except OSError:  # the client is gone (a killed worker): the message was taken all the same
                pass

        def do_GET(self) -> None:
            path, _, raw = self.path.partition("?")
            match = _PATH_RE.match(path)
            if not match or not self._auth_ok(match["sid"]):
                self._reply(404, {**_ERRORS[404], "more_info": ""})
                return
            self._reply(200, fake._listed({k: v[0] for k, v in parse_qs(raw).items()}))

        def _auth_ok(self, sid: str) -> bool:
            expected = "Basic " + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
            return sid == fake.account_sid and self.headers.get("Authorization") == expected

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `.requests` instead."""

    return Handler


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running fake Twilio; `.base_url`, `.messages`, `.fail_next(n, status)`, `.account_sid`, `.auth_token`."""
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.close()
