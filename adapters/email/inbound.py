"""The email adapter's SMTP receiver (aiosmtpd): bounces (DSN, RFC 3464) and replies.

A delivery status notification names the original Message-ID (in its returned headers),
the failed recipient and a status code: ``5.x.x`` is a **hard** bounce (the address is
marked undeliverable and the intent failed), ``4.x.x`` a soft one (recorded only). Any
other message whose ``In-Reply-To``/``References`` names one of our Message-IDs is a
reply, recorded as ``email_reply``. Everything else is accepted and ignored.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

from .adapter import idem_key, parse_message_id

_MID = re.compile(r"<sk\.[^<>\s]+@[^<>\s]+>")


def parse_dsn(msg: EmailMessage) -> list[dict[str, Any]]:
    """One dict per failed recipient: ``address``, ``status``, ``kind`` (hard/soft), ``message_id``, ``reason``."""
    if msg.get_content_type() != "multipart/report":
        return []
    original_id = ""
    reports: list[dict[str, Any]] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            text = part.as_string() if ctype == "message/rfc822" else part.get_payload(decode=True) or b""
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            m = _MID.search(text)
            if m:
                original_id = m.group(0)
        elif ctype == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks[1:] if isinstance(blocks, list) else []:
                fields = {k.lower(): str(v) for k, v in block.items()}
                action = fields.get("action", "").lower()
                if action and action not in ("failed", "delayed"):
                    continue
                recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
                address = recipient.split(";", 1)[-1].strip()
                status = fields.get("status", "").strip()
                kind = "hard" if status.startswith("5") else "soft"
                reports.append({"address": address, "status": status, "kind": kind,
                                "reason": (fields.get("diagnostic-code") or status)[:500]})
    for r in reports:
        r["message_id"] = original_id
    return reports


class Handler:
    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        try:
            events = self.events_for(msg)
            if events:
                await asyncio.to_thread(self.adapter.hub.record, events)
        except Exception:  # noqa: BLE001 - accept the mail; the log says what failed
            self.adapter.log.exception("email: could not record an inbound message")
        return "250 OK"

    def events_for(self, msg: EmailMessage) -> list[dict[str, Any]]:
        out = []
        for r in parse_dsn(msg):
            parsed = parse_message_id(r["message_id"]) if r["message_id"] else None
            data = {"message_id": r["message_id"], "kind": r["kind"], "address": r["address"], "reason": r["reason"],
                    "status": r["status"]}
            if parsed:
                data["intent"] = parsed[0]
            out.append({"type": "email_bounce", "channel": "email", "identities": {"email": r["address"]},
                        "data": data, "touchpoint": self.adapter.name,
                        "idempotency_key": idem_key(f"bounce:{r['message_id'] or r['address']}:{r['status']}")})
        if out:
            return out
        refs = " ".join(str(msg.get(h, "")) for h in ("In-Reply-To", "References"))
        m = _MID.search(refs)
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1]
        if m and sender:
            mid = str(msg.get("Message-ID", "")) or m.group(0)
            out.append({"type": "email_reply", "channel": "email", "identities": {"email": sender},
                        "data": {"message_id": m.group(0), "subject": str(msg.get("Subject", ""))[:500]},
                        "touchpoint": self.adapter.name,
                        "idempotency_key": idem_key(f"reply:{mid}")})
        return out


class Receiver:
    def __init__(self, controller: Any) -> None:
        self.controller = controller
        self.port = int(controller.port)

    def stop(self) -> None:
        self.controller.stop()


def start_receiver(adapter: Any, listen: str) -> Receiver:
    from aiosmtpd.controller import Controller

    host, _, port = listen.rpartition(":")
    host = host or "127.0.0.1"
    if not int(port or 0):  # aiosmtpd checks readiness by connecting: it needs the real port
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            port = str(s.getsockname()[1])
    controller = Controller(Handler(adapter), hostname=host, port=int(port))
    controller.start()
    return Receiver(controller)
