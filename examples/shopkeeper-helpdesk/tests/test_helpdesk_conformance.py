"""The Shopkeeper conformance suite, with its delivery checks, run against the helpdesk channel
and a real local HTTP server standing in for the helpdesk."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from shopkeeper_helpdesk import HelpdeskAdapter

from shopkeeper.testing import ChannelConformance


class Helpdesk:
    """A ticket endpoint on a free loopback port that keeps every request it receives."""

    def __init__(self) -> None:
        self.tickets: list[dict] = []
        self.keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.tickets.append(body)
                outer.keys.append(self.headers["Idempotency-Key"])
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tickets"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def helpdesk():
    h = Helpdesk()
    yield h
    h.close()


class TestHelpdeskConformance(ChannelConformance):
    adapter_class = HelpdeskAdapter

    @pytest.fixture(autouse=True)
    def _desk(self, helpdesk):
        self.desk = helpdesk

    def adapter_config(self, tmp_path):
        return {"url": self.desk.url, "journal": str(tmp_path / "helpdesk-journal.log"), "retry_delays": [0.05]}

    def delivered(self, harness, adapter):
        return [f"{t['message_id']}" for t in self.desk.tickets]
