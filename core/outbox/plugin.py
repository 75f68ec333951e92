"""The outbox's hook implementations: it is a built-in plugin (``shopkeeper.plugins.BUILTIN_PLUGINS``)."""

from __future__ import annotations

from typing import Any

from ..events import EventType, FieldSpec
from ..plugins import hookimpl
from .transitions import processor

_S = str


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """The store-wide index of intents not yet final (``root['outbox']``)."""
    from ..store import EvolveStep
    from . import create_index

    return [EvolveStep("outbox-index", create_index)]


@hookimpl
def shopkeeper_event_types() -> list[EventType]:
    return [
        EventType("message_request", "email", {"template": FieldSpec(_S, True), "purpose": FieldSpec(_S),
                                               "intent": FieldSpec(_S, max_length=64), "valid_until": FieldSpec(_S)},
                  "ask the hub to send a message (channel = the message's channel); valid_until (ISO 8601): not "
                  "sent after then, nor deferred past it by quiet hours; other fields are the payload"),
        EventType("message_dispatch", "email", {"intent": FieldSpec(_S, True), "message_id": FieldSpec(_S, True)},
                  "an adapter claims an outbox intent and is about to send it with this Message-ID"),
        EventType("message_sent", "email", {"intent": FieldSpec(_S), "message_id": FieldSpec(_S)},
                  "a message on a channel other than email was delivered"),
        EventType("message_failed", "email", {"intent": FieldSpec(_S, True), "reason": FieldSpec(_S),
                                              "status": FieldSpec(_S), "address": FieldSpec(_S)},
                  "an outbox intent was not sent: status suppressed (consent, no address), failed, "
                  "or retry (a temporary failure: pending again until the attempts are used up)"),
        EventType("message_cancelled", "email", {"intent": FieldSpec(_S, True), "reason": FieldSpec(_S)},
                  "an outbox intent that is not sent yet is withdrawn (it ends cancelled)"),
        EventType("complaint", "email", {"reason": FieldSpec(_S), "intent": FieldSpec(_S)},
                  "a spam complaint (feedback loop): marketing on this channel is suppressed until consent "
                  "is granted again"),
    ]


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    return [processor]
