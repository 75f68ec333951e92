"""SMTP for the email adapter: a pool of open connections, one envelope per message, the pace
per recipient domain.

Why its own module: the transport is the part an integrator swaps or tunes (TLS, auth, pool
size) without touching rendering or tracking (issue 19). Errors are sorted the way delivery
needs them: a 5xx reply is a :class:`~shopkeeper.adapters.delivery.PermanentFailure` (the
address is undeliverable), anything else is raised as it is and retried with backoff.
"""

from __future__ import annotations

import asyncio
import re
import time
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
    """``connections`` SMTP connections, opened lazily and kept open between messages."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._pool: asyncio.Queue | None = None
        self._sender: bytes | None = None  # MAIL FROM's quoted address, built once

    def start(self) -> None:
        self._pool = asyncio.Queue()
        for _ in range(self.cfg.connections):
            self._pool.put_nowait(None)  # connected lazily

    async def close(self) -> None:
        while self._pool is not None and not self._pool.empty():
            client = self._pool.get_nowait()
            if client is not None:
                try:
                    await client.quit()
                except Exception:  # noqa: BLE001 - closing anyway
                    client.close()

    async def _connect(self) -> Any:
        import aiosmtplib

        cfg = self.cfg
        client = aiosmtplib.SMTP(hostname=cfg.smtp_host, port=cfg.smtp_port, timeout=cfg.smtp_timeout,
                                 use_tls=cfg.smtp_tls == "tls", start_tls=cfg.smtp_tls == "starttls")
        await client.connect()
        if cfg.smtp_user:
            await client.login(cfg.smtp_user, cfg.smtp_password or "")
        if client.is_ehlo_or_helo_needed:  # once per connection: _envelope's commands assume it
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return client

    async def _envelope(self, client: Any, mail: bytes, address: str) -> None:
        """One message on an open connection: MAIL, RCPT, DATA. aiosmtplib's ``sendmail`` parses
        both addresses with ``email.utils.parseaddr`` for every message (~10% of the adapter's
        event loop); the sender is quoted once here and a plain recipient address is used as it
        is (anything unusual still goes through the library's quoting). The same errors as
        ``sendmail``'s: a refused sender or recipient raises its ``SMTPResponseException``."""
        import aiosmtplib
        from aiosmtplib.email import quote_address

        if self._sender is None:
            self._sender = quote_address(self.cfg.bounce_addr or self.cfg.from_addr).encode("ascii")
        resp = await client.execute_command(b"MAIL", b"FROM:" + self._sender)
        if resp.code != 250:
            raise aiosmtplib.SMTPSenderRefused(resp.code, resp.message, self.cfg.bounce_addr or self.cfg.from_addr)
        rcpt = f"<{address}>" if _PLAIN_ADDRESS.match(address) else quote_address(address)
        resp = await client.execute_command(b"RCPT", b"TO:" + rcpt.encode("ascii"))
        if resp.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(resp.code, resp.message, address)
        await client.data(mail)

    async def send(self, mail: bytes, address: str) -> None:
        import aiosmtplib

        assert self._pool is not None
        client = await self._pool.get()
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            await self._envelope(client, mail, address)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
            code = _smtp_code(exc)
            if code is not None and 500 <= code < 600:
                raise PermanentFailure(str(exc)) from exc
            client = await _reset(client)
            raise
        except PermanentFailure:
            client = await _reset(client)
            raise
        except Exception:
            if client is not None:
                client.close()
            client = None
            raise
        finally:
            self._pool.put_nowait(client)


def _smtp_code(exc: Exception) -> int | None:
    code = getattr(exc, "code", None)
    if code is None:
        for r in getattr(exc, "recipients", []) or []:
            code = getattr(r, "code", None)
            if code is not None:
                break
    return code


async def _reset(client: Any) -> Any:
    try:
        await client.rset()
        return client
    except Exception:  # noqa: BLE001 - a broken connection is replaced
        client.close()
        return None


#: an address the SMTP envelope can carry as it is (no quoting, comments or display name)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


__all__ = ["DomainRateLimiter", "SmtpPool"]
