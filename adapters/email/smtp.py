"""SMTP for the email adapter: a pool of open connections, one envelope per message, the pace
per recipient domain.

Why its own module: the transport is the part an integrator swaps or tunes (TLS, auth, pool
size) without touching rendering or tracking (issue 19). Errors are sorted the way delivery
needs them: a 5xx reply is a :class:`~shopkeeper.adapters.delivery.PermanentFailure` (the
address is undeliverable), anything else is raised as it is and retried with backoff.
"""

from __future__ import annotations

import asyncio
import queue
import re
import smtplib
import threading
import time
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

    The standard library's ``smtplib`` on worker threads, one connection per thread at a time:
    a message costs one hand-over to a thread and back to the event loop, and smtplib's blocking
    MAIL/RCPT/DATA, where aiosmtplib paid, per command, a task and a timer for its timeout and
    its own response parsing on the loop — ~2.8x the client CPU per message against the same
    aiosmtpd (docs/benchmarks.md §43). The errors are sorted as before: a 5xx reply is a
    :class:`~shopkeeper.adapters.delivery.PermanentFailure`, anything else is raised as it is
    (temporary: retried with backoff)."""

    #: jobs a worker takes from the queue at once when they are waiting there: it sends them one
    #: after the other on its connection, writes each Message-ID to the journal as the server
    #: accepts it, syncs the journal once, and wakes the event loop once for all of them — where one
    #: job at a time cost an ``fsync`` per ~2 messages and a loop wake-up per message
    #: (docs/benchmarks.md §86). It never waits for a batch to fill: a lone job goes alone.
    batch_max = 16
    #: send each envelope as one command group to a server that advertises ``PIPELINING``
    #: (:meth:`_pipelined`); False keeps one command per round trip (an A/B, or a server that
    #: advertises it and gets it wrong)
    pipelining = True

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._idle: list[Any] = []  # open connections not in use
        self._lock = threading.Lock()
        #: messages for the worker threads: a C queue, where an executor's ``submit`` built a future
        #: and a work item and checked its idle-thread semaphore per message (docs/benchmarks.md §74)
        self._jobs: queue.SimpleQueue | None = None
        self._workers: list[threading.Thread] = []
        self._sender: str | None = None  # MAIL FROM's quoted address, built once
        #: called once per worker batch after the jobs' ``after`` calls, before their senders are
        #: woken (the journal's ``fsync``); an exception fails every job whose ``after`` ran
        self.sync: Any = None
        #: worker batches run so far (a batch settles its senders with one loop wake-up)
        self.batches = 0

    def start(self) -> None:
        self._jobs = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._work, args=(self._jobs,), name=f"shopkeeper-smtp_{i}",
                                          daemon=True) for i in range(self.cfg.connections)]
        for t in self._workers:
            t.start()

    def _work(self, jobs: queue.SimpleQueue) -> None:
        """A worker thread: take the jobs waiting (up to :attr:`batch_max`), send each, sync, then
        settle their loop futures from here in one hand-over (None in the queue = stop)."""
        while (job := jobs.get()) is not None:
            batch, stop = [job], False
            while len(batch) < self.batch_max:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # another worker's stop: this one ends after its batch
                    stop = True
                    break
                batch.append(more)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[tuple[Any, ...]]) -> None:
        self.batches += 1
        results: list[BaseException | None] = []
        synced: list[int] = []  # the jobs whose ``after`` ran: they wait for ``sync``
        for i, (_loop, _fut, mail, address, after, message_id) in enumerate(batch):
            try:
                self._send(mail, address, after, message_id)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                results.append(exc)
            else:
                results.append(None)
                if after is not None:
                    synced.append(i)
        if synced and self.sync is not None:
            try:
                self.sync()
            except BaseException as exc:  # noqa: BLE001 - accepted and written, not known durable
                for i in synced:
                    results[i] = exc
        by_loop: dict[Any, list[tuple[asyncio.Future, BaseException | None]]] = {}
        for (loop, fut, *_rest), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, result))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    async def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            try:
                client.quit()
            except Exception:  # noqa: BLE001 - closing anyway
                client.close()
        if self._jobs is not None:
            for _ in self._workers:
                self._jobs.put(None)

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
        used as it is). A refused sender or recipient is reset (RSET) and raised. To a server that
        advertises ``PIPELINING`` (RFC 2920: Postfix, Exim, most MTAs) the three commands go in one
        write and the message in one more: two round trips where there were four."""
        if self._sender is None:
            self._sender = quoteaddr(self.cfg.bounce_addr or self.cfg.from_addr)
        rcpt = f"<{address}>" if _PLAIN_ADDRESS.match(address) else quoteaddr(address)
        if self.pipelining and client.does_esmtp and client.has_extn("pipelining"):
            self._pipelined(client, mail, address, rcpt)
            return
        code, resp = client.docmd("mail", "FROM:" + self._sender)
        if code != 250:
            _rset(client)
            raise smtplib.SMTPSenderRefused(code, resp, self.cfg.bounce_addr or self.cfg.from_addr)
        code, resp = client.docmd("rcpt", "TO:" + rcpt)
        if code not in (250, 251):
            _rset(client)
            raise smtplib.SMTPRecipientsRefused({address: (code, resp)})
        code, resp = client.data(mail)
        if code != 250:
            _rset(client)
            raise smtplib.SMTPDataError(code, resp)

    def _pipelined(self, client: Any, mail: bytes, address: str, rcpt: str) -> None:
        """:meth:`_envelope` as one command group (RFC 2920): MAIL, RCPT and DATA in one write, their
        three replies read in order, then the message (as smtplib's ``data`` sends it: leading dots
        doubled, ended by ``CRLF.CRLF``) and its reply. A refusal is sorted as before, by the first
        command refused; a server that opened DATA after all for a refused envelope gets the
        empty end of data first (nothing is delivered: it has no recipient), then RSET. The message
        itself is sent only after the 354, so a refused envelope never carries it."""
        client.send(f"MAIL FROM:{self._sender}\r\nRCPT TO:{rcpt}\r\nDATA\r\n")
        mail_reply, rcpt_reply, data_reply = client.getreply(), client.getreply(), client.getreply()
        refused = mail_reply[0] != 250 or rcpt_reply[0] not in (250, 251)
        if refused or data_reply[0] != 354:
            if data_reply[0] == 354:
                client.send(b".\r\n")
                client.getreply()
            _rset(client)
            if mail_reply[0] != 250:
                raise smtplib.SMTPSenderRefused(*mail_reply, self.cfg.bounce_addr or self.cfg.from_addr)
            if rcpt_reply[0] not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({address: rcpt_reply})
            raise smtplib.SMTPDataError(*data_reply)
        body = _LEADING_DOT.sub(b"..", mail)
        client.send(body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"))
        code, resp = client.getreply()
        if code != 250:
            _rset(client)
            raise smtplib.SMTPDataError(code, resp)

    def _send(self, mail: bytes, address: str, after: Any = None, message_id: str = "") -> None:
        """On a worker thread: an idle connection (or a new one), the envelope, the connection
        back to the idle list — unless it broke (dropped: the next message opens another) — and,
        once the server accepted it, ``after(message_id)`` (the journal's write) on this thread; the
        batch's :attr:`sync` follows before the sender hears of it."""
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
        """Send ``mail`` to ``address`` on a worker thread; ``after(message_id)`` runs there once the
        server accepted it and :attr:`sync` after the worker's batch, before this returns (the
        journal: written per message, synced per batch, no hand-over to another thread)."""
        assert self._jobs is not None, "SmtpPool.start() first"
        # a loop future settled by the worker itself: run_in_executor chains a concurrent future to
        # a loop future per message (two callbacks and a state copy each way, docs/benchmarks.md §74)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, mail, address, after, message_id))
        await fut


def _settle_all(settled: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for fut, exc in settled:
        if fut.done():  # the sender gave up waiting (cancelled)
            continue
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


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


#: a line of the message that starts with a dot (doubled in DATA: RFC 5321 4.5.2, as smtplib does)
_LEADING_DOT = re.compile(rb"(?m)^\.")

#: an address the SMTP envelope can carry as it is (no quoting, comments or display name)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


__all__ = ["DomainRateLimiter", "SmtpPool"]
