"""Fixtures the adapter tests share: a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from shopkeeper.testing import free_port


class SmtpSink:
    """Collects what it receives; can answer 4xx a few times or 5xx for some addresses."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[Any] = []
        self.temp_failures = 0
        self.reject = re.compile(r"^reject")
        self.lock = threading.Lock()
        #: advertise PIPELINING (RFC 2920) in the EHLO reply, as Postfix and most MTAs do
        self.pipelining = False

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves it to a handler with this hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.reject.search(address):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.temp_failures > 0:
                self.temp_failures -= 1
                return "451 4.3.0 try again later"
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            self.envelopes.append(envelope)
        return "250 OK"


class FlakySink(SmtpSink):
    """Drops the connection at the first RCPT for a ``drop…`` address and answers 421 to the first
    DATA for a ``busy…`` one (the faults a connection pool must survive); remembers each client
    connection (``peers``) and counts the envelopes whose DATA arrived with their RCPT, i.e. in one
    pipelined command group (``grouped``, RFC 2920)."""

    def __init__(self) -> None:
        super().__init__()
        self.faults = ["drop", "421"]
        self.peers: set[Any] = set()
        self.grouped = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.peers.add(session.peer)
        if b"DATA\r\n" in bytes(server._reader._buffer):  # pipelined: DATA already read with RCPT
            self.grouped += 1
        if address.startswith("drop") and "drop" in self.faults:
            self.faults.remove("drop")
            server.transport.close()  # the server goes away mid-envelope
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.rcpt_tos[0].startswith("busy") and "421" in self.faults:
            self.faults.remove("421")
            return "421 4.3.2 shutting down"
        return await super().handle_DATA(server, session, envelope)


def _served(sink: SmtpSink) -> Any:
    """``sink`` answering SMTP on a loopback port (``.port``) until the fixture ends."""
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    sink.port = port  # type: ignore[attr-defined]
    yield sink
    ctl.stop()


@pytest.fixture
def flaky() -> Any:
    """A :class:`FlakySink` on a loopback port (``.port``), one command per round trip unless a test
    sets ``pipelining``."""
    yield from _served(FlakySink())


@pytest.fixture
def smtp() -> Any:
    yield from _served(SmtpSink())


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real Kannel (bearerbox + smsbox + fakesmsc, see ``kannel.py``) shared by a module's tests:
    starting one takes about a second; tests tell their messages apart by number."""
    from .kannel import Kannel

    k = Kannel(tmp_path_factory.mktemp("kannel")).start()
    yield k
    k.stop()
