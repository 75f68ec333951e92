"""SMTP for the email adapter: a pool of open connections, one envelope per message, the pace
per recipient domain.

Why its own module: the transport is the part an integrator swaps or tunes (TLS, auth, pool
size) without touching rendering or tracking (issue 19). Errors are sorted the way delivery
needs them: a 5xx reply is a :class:`~shopkeeper.adapters.delivery.PermanentFailure` (the
address is undeliverable), anything else is raised as it is and retried with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from smtplib import quoteaddr
from typing import Any

from ..delivery import PermanentFailure


class DomainRateLimiter:
    """A token bucket per recipient domain."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def delay(self, domain: str) -> float:
        """Take one token; seconds to wait before sending (0 = now)."""
        now = time.monotonic()
        tokens, last = self._buckets.get(domain, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate) - 1.0
        self._buckets[domain] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / self.rate


class SmtpPool:
    """``connections`` SMTP connections, opened lazily and kept open between messages.

    The standard library's ``smtplib`` opens each one on a worker thread (greeting, EHLO,
    STARTTLS, AUTH). Without TLS the connection is then handed to the event loop and each
    message's MAIL/RCPT/DATA runs there as a small state machine (:class:`_Envelope`): no thread
    hand-over per reply (docs/benchmarks.md §64). With TLS each message is smtplib's blocking
    exchange on a worker thread, one connection per thread at a time — where aiosmtplib had paid,
    per command, a task and a timer for its timeout (~2.8x the client CPU, §43). Either way the
    errors are sorted alike: a 5xx reply is a :class:`~shopkeeper.adapters.delivery.PermanentFailure`,
    anything else is raised as it is (temporary: retried with backoff)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._idle: list[Any] = []  # open connections not in use
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._sender: str | None = None  # MAIL FROM's quoted address, built once
        # without TLS the envelopes run on the event loop (see :meth:`send`): its connections
        self._loop_idle: list[_Envelope] = []
        self._loop_open = 0
        self._loop_waiters: collections.deque[asyncio.Future] = collections.deque()

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.cfg.connections, thread_name_prefix="shopkeeper-smtp")

    async def close(self) -> None:
        loop_idle, self._loop_idle = self._loop_idle, []
        for conn in loop_idle:
            if conn.transport is not None and conn.lost is None:
                conn.transport.write(b"quit\r\n")
            conn.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            try:
                client.quit()
            except Exception:  # noqa: BLE001 - closing anyway
                client.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def _connect(self) -> Any:
        cfg = self.cfg
        if cfg.smtp_tls == "tls":
            client = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout)
        else:
            client = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout)
        try:
            client.ehlo_or_helo_if_needed()
            if cfg.smtp_tls == "starttls":
                client.starttls()
                client.ehlo()
            if cfg.smtp_user:
                client.login(cfg.smtp_user, cfg.smtp_password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _envelope(self, client: Any, mail: bytes, address: str) -> None:
        """One message on an open connection: MAIL, RCPT, DATA (smtplib's ``sendmail`` without
        its per-message address parsing: the sender is quoted once, a plain recipient address is
        used as it is). A refused sender or recipient is reset (RSET) and raised."""
        if self._sender is None:
            self._sender = quoteaddr(self.cfg.bounce_addr or self.cfg.from_addr)
        code, resp = client.docmd("mail", "FROM:" + self._sender)
        if code != 250:
            _rset(client)
            raise smtplib.SMTPSenderRefused(code, resp, self.cfg.bounce_addr or self.cfg.from_addr)
        rcpt = f"<{address}>" if _PLAIN_ADDRESS.match(address) else quoteaddr(address)
        code, resp = client.docmd("rcpt", "TO:" + rcpt)
        if code not in (250, 251):
            _rset(client)
            raise smtplib.SMTPRecipientsRefused({address: (code, resp)})
        code, resp = client.data(mail)
        if code != 250:
            _rset(client)
            raise smtplib.SMTPDataError(code, resp)

    def _send(self, mail: bytes, address: str, after: Any = None, message_id: str = "") -> None:
        """On a worker thread: an idle connection (or a new one), the envelope, the connection
        back to the idle list — unless it broke (dropped: the next message opens another) — and,
        once the server accepted it, ``after(message_id)`` (the delivery journal) on this thread."""
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._connect()
        try:
            self._envelope(client, mail, address)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
            code = _smtp_code(exc)
            keep = not isinstance(exc, smtplib.SMTPServerDisconnected) and code is not None and code != 421
            if keep:
                with self._lock:
                    self._idle.append(client)
            else:
                client.close()
            if code is not None and 500 <= code < 600:
                raise PermanentFailure(str(exc)) from exc
            raise
        except BaseException:
            client.close()
            raise
        with self._lock:
            self._idle.append(client)
        if after is not None:
            after(message_id)

    async def send(self, mail: bytes, address: str, after: Any = None, message_id: str = "") -> None:
        """Send ``mail`` to ``address``; ``after(message_id)`` (the delivery journal) runs on a worker
        thread once the server accepted it.

        Without TLS the envelope runs **on the event loop**, over a connection that smtplib opened
        and logged in on a worker thread: a message's four replies are read by the loop's one
        ``select`` with every other connection's, instead of each costing a worker thread a GIL
        hand-off behind the CPU-bound threads of the process (the loop rendering, the batched
        reads) — eight or more hand-offs per message, the bound of the adapter's SMTP stage
        (docs/benchmarks.md §64). With TLS (``tls``, ``starttls``) the whole exchange runs on a
        worker thread as before (asyncio cannot adopt smtplib's TLS socket)."""
        assert self._executor is not None, "SmtpPool.start() first"
        loop = asyncio.get_running_loop()
        if self.cfg.smtp_tls != "none":
            await loop.run_in_executor(self._executor, self._send, mail, address, after, message_id)
            return
        await self._send_on_loop(loop, mail, address)
        if after is not None:
            await loop.run_in_executor(self._executor, after, message_id)

    # -- the envelope on the event loop (connections without TLS) ----------------------------

    async def _loop_connection(self, loop: asyncio.AbstractEventLoop) -> _Envelope:
        """An idle connection, a new one (at most ``connections``: the greeting, EHLO and AUTH by
        smtplib on a worker thread, then its socket handed to the loop), or the next one released."""
        while True:
            while self._loop_idle:
                conn = self._loop_idle.pop()
                if conn.lost is None:
                    return conn
                self._loop_open -= 1  # the server closed it while idle
            if self._loop_open < self.cfg.connections:
                self._loop_open += 1
                try:
                    client = await loop.run_in_executor(self._executor, self._connect)
                    sock, client.sock, client.file = client.sock, None, None
                    _transport, conn = await loop.create_connection(_Envelope, sock=sock)
                    return conn
                except BaseException:
                    self._loop_open -= 1
                    self._loop_release(None)  # a waiter may open one in its place
                    raise
            fut = loop.create_future()
            self._loop_waiters.append(fut)
            try:
                got = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self._loop_release(fut.result())  # handed over as this task was cancelled
                raise
            if got is not None:
                return got

    def _loop_release(self, conn: _Envelope | None) -> None:
        """Hand ``conn`` (None: a connection closed, a slot freed) to the first waiter, else keep it idle."""
        while self._loop_waiters:
            fut = self._loop_waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if conn is not None:
            self._loop_idle.append(conn)

    async def _send_on_loop(self, loop: asyncio.AbstractEventLoop, mail: bytes, address: str) -> None:
        """:meth:`_send` on the event loop: the same envelope, the same sorting of errors (5xx ->
        :class:`PermanentFailure`; a refusal keeps the connection after RSET, a 421, a drop or a
        timeout closes it), ``smtp_timeout`` for the whole envelope."""
        conn = await self._loop_connection(loop)
        if self._sender is None:
            self._sender = quoteaddr(self.cfg.bounce_addr or self.cfg.from_addr)
        rcpt = f"<{address}>" if _PLAIN_ADDRESS.match(address) else quoteaddr(address)
        body = _DOT.sub(b"..", mail)
        fut = loop.create_future()
        conn.start(fut, f"mail FROM:{self._sender}\r\n".encode("ascii"), f"rcpt TO:{rcpt}\r\n".encode("ascii"),
                   body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"),
                   self.cfg.bounce_addr or self.cfg.from_addr, address)
        timer = loop.call_later(self.cfg.smtp_timeout, conn.time_out)
        keep = False
        try:
            await fut
            keep = True
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
            code = _smtp_code(exc)
            keep = code is not None and code != 421
            if code is not None and 500 <= code < 600:
                raise PermanentFailure(str(exc)) from exc
            raise
        finally:
            timer.cancel()
            if keep and conn.lost is None:
                self._loop_release(conn)
            else:
                conn.close()
                self._loop_open -= 1
                self._loop_release(None)


#: the states of :class:`_Envelope`: the reply awaited is to MAIL, RCPT, DATA, the message, RSET
_MAIL, _RCPT, _DATA, _BODY, _RSET = range(5)


class _Envelope(asyncio.Protocol):
    """One SMTP connection on the event loop, sending one message at a time: the server's replies
    drive MAIL -> RCPT -> DATA -> the dot-stuffed message (no PIPELINING: each reply is awaited),
    and the message's one future is settled at the end — a few callbacks per message, where a
    coroutine reading each reply paid a task step and a future per reply (an asyncio-streams
    version of this cost the loop ~0.5 ms per message, as much as the worker threads it replaced)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self._buf = b""
        self._lines: list[bytes] = []
        self._fut: asyncio.Future | None = None
        self._state = _MAIL
        self._next: tuple[bytes, bytes] = (b"", b"")
        self._who: tuple[str, str] = ("", "")
        self._error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed{f': {exc}' if exc else ''}")
        self._settle(self.lost)

    def start(self, fut: asyncio.Future, mail_cmd: bytes, rcpt_cmd: bytes, body: bytes, sender: str,
              address: str) -> None:
        self._fut, self._state, self._error = fut, _MAIL, None
        self._next, self._who = (rcpt_cmd, body), (sender, address)
        if self.lost is not None:
            self._settle(self.lost)
            return
        self.transport.write(mail_cmd)  # type: ignore[union-attr]

    def time_out(self) -> None:
        self._settle(TimeoutError("SMTP server did not answer in time"))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _settle(self, exc: BaseException | None) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end + 1]
            start = end + 1
            self._lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] == b"-":
                continue
            text, self._lines = b"\n".join(self._lines), []
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
            self._reply(code, text)
        self._buf = buf[start:]

    def _refuse(self, exc: BaseException) -> None:
        """Reset the envelope after a refusal (as smtplib's callers do) and settle once RSET is answered."""
        self._error, self._state = exc, _RSET
        self.transport.write(b"rset\r\n")  # type: ignore[union-attr]

    def _reply(self, code: int, text: bytes) -> None:
        if self._fut is None:
            return  # nothing is being sent (a late reply after a time-out): the connection is closing
        state, w = self._state, self.transport.write  # type: ignore[union-attr]
        if state == _MAIL:
            if code != 250:
                self._refuse(smtplib.SMTPSenderRefused(code, text, self._who[0]))
            else:
                self._state = _RCPT
                w(self._next[0])
        elif state == _RCPT:
            if code not in (250, 251):
                self._refuse(smtplib.SMTPRecipientsRefused({self._who[1]: (code, text)}))
            else:
                self._state = _DATA
                w(b"data\r\n")
        elif state == _DATA:
            if code != 354:
                self._settle(smtplib.SMTPDataError(code, text))
            else:
                self._state = _BODY
                w(self._next[1])
        elif state == _BODY:
            if code != 250:
                self._refuse(smtplib.SMTPDataError(code, text))
            else:
                self._settle(None)
        else:  # _RSET answered
            self._settle(self._error)


def _smtp_code(exc: Exception) -> int | None:
    code = getattr(exc, "smtp_code", None)
    if code is None:
        for got in (getattr(exc, "recipients", None) or {}).values():
            code = got[0]
            break
    return code


def _rset(client: Any) -> None:
    try:
        client.rset()
    except Exception:  # noqa: BLE001 - a broken connection fails the next command, and is replaced
        pass


#: a line of the message starting with a period: doubled in DATA (RFC 5321 4.5.2, as smtplib does)
_DOT = re.compile(rb"(?m)^\.")
#: an address the SMTP envelope can carry as it is (no quoting, comments or display name)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


__all__ = ["DomainRateLimiter", "SmtpPool"]
