"""RFC 5322 bytes for one email: headers made safe, text/HTML parts, the Date header.

Written out directly instead of through ``email.message.EmailMessage``, whose policy machinery
(header parsing and folding, MIME generation) cost most of the CPU per message. Its own module
because it is the one part of the adapter that knows MIME (issue 19: SMTP, rendering, tracking
and the journal each in their own room).
"""

from __future__ import annotations

import base64
import secrets
import time
from email.utils import formataddr
from typing import Any

_date_cache: list[Any] = [0, ""]


def date_header() -> str:
    """The Date header (RFC 5322), formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        from email.utils import formatdate

        _date_cache[:] = [now, formatdate(now, localtime=False)]
    return _date_cache[1]


def header_value(value: str) -> str:
    """One header line's value: no line breaks (no header injection), RFC 2047 when not ASCII."""
    value = " ".join(value.split()) if ("\r" in value or "\n" in value) else value
    if value.isascii():
        return value
    if "@" in value and "<" in value:  # "Näme <addr>": encode the name only
        from email.utils import parseaddr

        name, addr = parseaddr(value)
        return formataddr((name, addr), charset="utf-8")
    from email.header import Header

    return Header(value, "utf-8").encode()


def _part(text: str, subtype: str) -> bytes:
    """A text/* body part: 7bit when it is short-lined ASCII, base64 otherwise."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if text.isascii() and max(map(len, lines)) <= 900:
        return (f'Content-Type: text/{subtype}; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
                + "\r\n".join(lines) + ("" if text.endswith("\n") else "\r\n")).encode("ascii")
    body = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            ).encode("ascii") + body


def build_mime(headers: list[tuple[str, str]], text: str | None, html: str | None) -> bytes:
    """RFC 5322 bytes for ``headers`` (values already safe) and a text and/or HTML body.

    Written out directly instead of through ``email.message.EmailMessage``, whose policy
    machinery (header parsing and folding, MIME generation) cost most of the CPU per message.
    """
    head = "".join(f"{k}: {v}\r\n" for k, v in headers) + "MIME-Version: 1.0\r\n"
    if text is not None and html is not None:
        boundary = "=_sk" + secrets.token_hex(12)
        return (head + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
                ).encode("ascii") + _part(text, "plain") + f"\r\n--{boundary}\r\n".encode() + _part(html, "html") \
            + f"\r\n--{boundary}--\r\n".encode()
    return head.encode("ascii") + (_part(text, "plain") if text is not None else _part(html or "", "html"))


__all__ = ["build_mime", "date_header", "header_value"]
