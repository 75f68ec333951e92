"""The hub's rules processor, which can stand aside for another processor's fast path.

Apart from :mod:`shopkeeper.rules.runtime` (at its size limit): the ingest loop asks a processor
that wants an event type whether it ``waives`` it before handing the event to a fast path
(``shopkeeper.engine.ingest.Processor``) — Decide's offer records, filed beside the customer
(``shopkeeper.offerlog``), when no central rule reacts to ``offer_shown``.
"""

from __future__ import annotations

from .runtime import RulesProcessor


class HubRulesProcessor(RulesProcessor):
    """The hub's rules processor, which can stand aside for a processor's fast path (``waives``)."""

    __slots__ = ()

    def waives(self, event_type: str) -> bool:
        """Whether no central rule (and no ``rules test`` observer) reacts to ``event_type``: then an
        event of it reaches a rule only through its customer's own rules or waiting timers, which a
        processor's fast path checks on the customer (``Customer.rules``, ``rule_state['timers']``)
        before taking it (``shopkeeper.engine.ingest.Processor``; Decide's offer records)."""
        service = self.service
        return service.observe is None and service.current.program_for(event_type) is None
