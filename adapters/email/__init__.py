"""The email adapter: outbound SMTP from the outbox, tracking, unsubscribe, bounces and replies.

See ``docs/adapters/email.md``. This package is a built-in plugin registered through the
``shopkeeper`` entry point exactly like a third-party adapter.
"""

from __future__ import annotations

from typing import Any

from shopkeeper import hookimpl

from .adapter import EmailAdapter, EmailConfig

__all__ = ["EmailAdapter", "EmailConfig"]


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [EmailAdapter]


@hookimpl
def shopkeeper_message_templates(adapters: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    from .adapter import template_names

    return {"email": template_names(adapters.get("email"))}


@hookimpl
def shopkeeper_event_types() -> list[Any]:
    from shopkeeper.events import EventType, FieldSpec

    return [EventType("email_reply", "email", {"message_id": FieldSpec(str), "subject": FieldSpec(str)},
                      "the customer replied to an email we sent")]
