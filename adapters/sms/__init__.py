"""The SMS adapter: outbound SMS from the outbox through Kannel, delivery reports, STOP/HELP.

See ``docs/sms.md``. This package is a built-in plugin registered through the
``shopkeeper`` entry point exactly like a third-party adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shopkeeper import hookimpl

if TYPE_CHECKING:
    from .adapter import SmsAdapter
    from .config import SmsConfig

__all__ = ["SmsAdapter", "SmsConfig"]


def __getattr__(name: str) -> object:
    """``SmsAdapter`` and ``SmsConfig`` imported on first use (PEP 562): the adapter module brings
    asyncio (~0.02 s of CPU), and this package is a built-in plugin that a command needing only its
    event types (``shopkeeper import``'s vocabulary) registers — issue 15's walk-through."""
    if name == "SmsAdapter":
        from .adapter import SmsAdapter as value
    elif name == "SmsConfig":
        from .config import SmsConfig as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


@hookimpl
def shopkeeper_adapters() -> list[type]:
    from .adapter import SmsAdapter

    return [SmsAdapter]


@hookimpl
def shopkeeper_message_templates(adapters: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    from .config import template_names

    return {"sms": template_names(adapters.get("sms"))}


@hookimpl
def shopkeeper_event_types() -> list[Any]:
    from shopkeeper.events import EventType, FieldSpec

    report = {"intent": FieldSpec(str, True), "message_id": FieldSpec(str), "campaign": FieldSpec(str),
              "run": FieldSpec(str), "message": FieldSpec(str), "dlr": FieldSpec(int), "status": FieldSpec(str),
              "reason": FieldSpec(str)}
    return [
        EventType("sms_delivered", "sms", report, "a delivery report: the SMS reached the phone"),
        EventType("sms_undelivered", "sms", report,
                  "a delivery report: the SMS did not reach the phone (status undelivered) or the SMSC "
                  "refused it (status rejected)"),
        EventType("sms_received", "sms", {"text": FieldSpec(str, max_length=1600), "to": FieldSpec(str),
                                          "keyword": FieldSpec(str)},
                  "an SMS from the customer (HELP and anything that is not STOP)"),
    ]
