"""The email adapter: outbound SMTP from the outbox, tracking, unsubscribe, bounces and replies.

See ``docs/adapters/email.md``. This package is a built-in plugin registered through the
``shopkeeper`` entry point exactly like a third-party adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shopkeeper import hookimpl

if TYPE_CHECKING:
    from .adapter import EmailAdapter, EmailConfig

__all__ = ["EmailAdapter", "EmailConfig"]


def __getattr__(name: str) -> object:
    """``EmailAdapter`` and ``EmailConfig`` imported on first use (PEP 562): the adapter module brings
    starlette, asyncio and ssl (~0.05 s of CPU), and this package is a built-in plugin that a command
    needing only its event types (``shopkeeper import``'s vocabulary) registers — issue 15's walk-through."""
    if name in __all__:
        from . import adapter

        value = getattr(adapter, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def shopkeeper_adapters() -> list[type]:
    from .adapter import EmailAdapter

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
