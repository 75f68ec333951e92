"""The hooks a Shopkeeper plugin can implement: this module *is* the reference.

Every built-in behaviour that can be swapped is itself a plugin registered exactly like a
third-party one (through the ``shopkeeper`` entry-point group), so reading the default
plugins shows how to write your own. Implement a hook by decorating a function (or a
method of a plugin object) with ``shopkeeper.hookimpl`` and naming it like the spec::

    from shopkeeper import hookimpl

    @hookimpl
    def shopkeeper_event_types():
        from shopkeeper.events import EventType, FieldSpec
        return [EventType("store_visit", "store", {"store_id": FieldSpec(str, True)})]

Misspelled hook names are reported at start-up (``check_pending``), so a typo fails loudly
instead of silently never being called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable

    import click

    from .context import HubContext
    from .customer import Customer
    from .events import EventType
    from .identity import NamespacePolicy
    from .outbox import Message, Receipt
    from .store import EvolveStep

hookspec = pluggy.HookspecMarker("shopkeeper")


@hookspec
def shopkeeper_event_types() -> list[EventType]:
    """Contribute event types to the vocabulary every event is validated against.

    Return a list of :class:`shopkeeper.events.EventType`. Fields you declare are checked
    (type, required, range); fields you do not declare are still accepted and stored.
    A type already defined is replaced, so a plugin can tighten a built-in type.
    """


@hookspec
def shopkeeper_identity_namespaces() -> list[NamespacePolicy]:
    """Contribute identity namespaces (``loyalty``, a vendor CRM's id…).

    Return a list of :class:`shopkeeper.identity.NamespacePolicy` giving each namespace a
    priority (higher decides which customer survives a merge), a ``max_per_customer`` and
    whether it is *strong* (identifies a person) or *weak* (a cookie or device).
    """


@hookspec
def shopkeeper_decide(
    hub: HubContext, customer: Customer, touchpoint: str, placement: str, context: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """Propose actions for ``Decide``: what a touch point should do now for this customer.

    Called for every ``Decide`` request with the hub deciding (its per-hub plugin state holds
    what your plugin loaded for it; take ``hub`` only if you need it), the resolved customer (read-only: do not
    change it here), the calling touch point, the placement (``home_hero``,
    ``agent_screen``…) and the caller's context. Return ``None`` or a list of dicts with
    keys ``kind`` (``offer``, ``message``, ``action``), ``id``, ``score`` (float, higher
    first), ``reason`` (why, shown to agents and in traces) and optional ``payload``.
    The hub gathers every plugin's answers and ranks them by score.
    """


@hookspec
def shopkeeper_processors(hub: HubContext) -> list[Any]:
    """Contribute in-transaction processors to the hub's event pipeline.

    Return a list of callables ``processor(folders, applied)`` (see
    :data:`shopkeeper.engine.ingest.Processor`). Each runs inside the transaction of every
    applied event, after the interaction is recorded: what it changes on the customer
    commits together with the event or not at all. Raising rejects that one event (the
    rest of the batch still commits). This is how the rules engine and incremental
    segment updates run. A processor may declare the event types it cares about in an
    ``event_types`` attribute (``event.type in processor.event_types``; absent or None = every
    event): outbox bookkeeping (``shopkeeper.outbox.BOOKKEEPING_TYPES``) reaches only the
    processors that declare it (docs/plugins.md, *Declaring the event types*).
    """


@hookspec(firstresult=True)
def shopkeeper_reload_rules(hub: HubContext, requested_by: dict[str, str] | None) -> dict[str, Any] | None:
    """Reload the central rules (``Admin.ReloadRules``, ``shopkeeper rules reload``).

    ``requested_by``: who asked — ``who`` (the API key's name) and ``from`` (the caller's
    address) — for the reload's record (the console's rules page shows who reloaded and what
    changed); ``None`` when not known.

    The first plugin that answers wins. Return a report dict: ``ok`` (bool), ``version``
    (content hash of the rule set now in force), ``rules`` (count) and ``errors`` (list of
    ``file:line:col: message``). A failed reload must leave the working rules in force.
    """


@hookspec
def shopkeeper_rule_actions() -> list[Any]:
    """Contribute actions to the rule vocabulary (``then:`` steps rule authors may use).

    Return a list of action definitions (see ``shopkeeper.rules``); the rules checker
    validates rule files against the union of all contributed actions.
    """


@hookspec
def shopkeeper_committed(changes: list[dict[str, Any]]) -> None:
    """React to changes after they are durably committed (never before).

    ``changes`` are the change-feed entries of one commit: dicts with ``cursor``,
    ``customer_id``, ``kind`` (``interaction``, ``consent``, ``merge``, ``forget``…; every kind is
    in ``shopkeeper.engine.feed.KINDS`` and docs/api.md), ``event_type`` and ``at``. A store-wide
    ``admin`` entry (rules reloaded, an evolve step run) has an empty ``customer_id``: check the
    kind before looking a customer up. Use it to send the email, pop the agent's screen, or sync a
    vendor CRM. Keep it quick: it runs on the hub's commit path; hand slow work to a queue.
    """


@hookspec
def shopkeeper_evolve_steps() -> list[EvolveStep]:
    """Contribute the named evolve steps that make the root folders your plugin owns.

    Return ``shopkeeper.store.EvolveStep(name, run, keep=None)`` objects. ``run(root)`` makes
    (or completes) your folders and must be idempotent; it runs once per store, in its own
    transaction, when the engine starts (or an offline tool opens the store) and the store has
    not recorded ``name`` in ``root['meta']['steps']``. ``keep(conn, tm)``, if given, is installed
    on every connection the store opens, to keep what ``run`` built current on every write (an
    index); a store that records such a step refuses writers that were not given it. Why a hook:
    the store imports no plugin, every root key has one owner that creates it, and plugins
    never compete for generation numbers. Never rename a step (a new name runs again).
    """


@hookspec
def shopkeeper_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``shopkeeper`` command line (``cli.add_command(...)``)."""


@hookspec
def shopkeeper_configure(hub: HubContext) -> None:
    """The hub is being built: read your configuration and set up per-hub state, before any writer.

    Called once per hub after the event types and identity namespaces are known and before
    :func:`shopkeeper_processors` is collected and the writer starts (``hub.writer`` is None):
    what :func:`shopkeeper_processors` and :func:`shopkeeper_startup` need (a service built
    from ``hub.config``) is made here and kept in ``hub.plugin_state``. Do not start threads
    or submit work here; that is :func:`shopkeeper_startup`, which runs once the writer runs,
    so nothing needs to wait or poll for it. An exception disables this plugin (by name),
    and none of its processors are collected.
    """


@hookspec
def shopkeeper_startup(hub: HubContext) -> None:
    """The hub has opened its store and is about to serve; start background work here.

    The engine's writer is already running (``hub.writer``): background work that changes
    the store (timers, scheduled jobs) must hand each change to it as an operation —
    ``hub.writer.submit_op(lambda folders, changes: ...)`` — never commit on its own
    thread, so that every change is published on the change feed and to
    :func:`shopkeeper_committed` like any event. Only events and operations submitted
    here can arrive before the gRPC server serves.

    An exception disables this plugin (reported by name in the log and in
    ``Admin.ListPlugins``); the hub keeps running — except
    :class:`shopkeeper.plugins.StartupRefused`, which stops the hub from starting (its
    message is shown to the operator). A plugin that serves in a reduced way reports it with
    ``hub.set_component(name, reason)``: health shows the component NOT_SERVING. The loop that does this is
    :func:`shopkeeper.plugins.call_each`. Adapters written on
    :class:`shopkeeper.adapters.base.Adapter` do not implement this hook: the built-in
    adapter manager configures and starts them (see :func:`shopkeeper_adapters`).
    """


@hookspec
def shopkeeper_shutdown(hub: HubContext) -> None:
    """The hub is stopping: stop background work and flush what you hold.

    Called after the gRPC server stopped taking calls but while ``hub.writer`` still takes
    work, so what you flush (an adapter's last bookkeeping) is committed and published;
    once every plugin returned, the writer commits the job in progress and fails what is
    still queued (``HubStopping``): wait for your flush's result before returning.
    """


@hookspec
def shopkeeper_adapters() -> list[type]:
    """Contribute touch-point adapter classes (subclasses of :class:`shopkeeper.adapters.base.Adapter`).

    Each class declares a unique ``name`` (the key of its section in the hub config file,
    ``adapters: {<name>: {...}}``, and the ``NAME`` of ``shopkeeper adapter run NAME``),
    the ``channels`` it delivers on (``("email",)``) and a ``Config`` dataclass: the
    **validated schema** of its section. Field types are checked (``int``, ``float``,
    ``bool``, ``str``, ``list[str]``, ``dict``), fields without a default are required and
    unknown keys are refused, each with an ``adapter.<name>.<field>: reason`` error; a
    ``__post_init__`` raising ``ValueError("field: reason")`` adds your own checks.

    The hub instantiates every adapter that has a section in its config file
    (``enabled: false`` skips one), hands it an in-process :class:`~shopkeeper.adapters.base.HubAPI`,
    registers the instance as a plugin (so its methods may implement any hook, e.g.
    :func:`shopkeeper_deliver` or :func:`shopkeeper_decide`) and calls ``start()``; on
    shutdown, ``stop()``. An adapter whose config is invalid or whose ``start()`` raises
    is reported by name and disabled; the hub keeps running. The same class runs in its
    own process with ``shopkeeper adapter run NAME --hub HOST:PORT --api-key KEY``.
    """


@hookspec(firstresult=True)
def shopkeeper_deliver(message: Message) -> Receipt | None:
    """Deliver one outbound message on its channel; **one** adapter per channel answers.

    ``message`` is a :class:`shopkeeper.outbox.Message`: an intent already committed in
    the customer's outbox (``shopkeeper.outbox.enqueue`` or a ``message_request`` event)
    with its ``id``, ``customer_id``, ``channel`` (``email``, ``sms``…), ``template``,
    ``purpose`` (the consent purpose checked before sending) and ``payload`` (offer,
    campaign…). Return ``None`` when ``message.channel`` is not yours; otherwise a
    :class:`shopkeeper.outbox.Receipt` (``accepted``, ``sent``, ``suppressed`` or
    ``failed``, with the ``message_id``). The first non-``None`` answer wins.

    The answering adapter owns the rest of the message's life: check consent
    (``Customer.may_contact(channel, purpose)``), claim the intent (a ``message_dispatch``
    event), send, then record ``email_sent``/``message_sent`` or ``message_failed``.
    Keep it quick (return ``accepted`` and send in the background); it may be called
    again for an intent already in flight after a restart, so it must be idempotent.
    :class:`shopkeeper.adapters.delivery.ChannelAdapter` does all of this (claim, send,
    mark, an fsync'd delivery journal, recovery after a crash): subclass it and implement
    ``send``.
    """


@hookspec
def shopkeeper_message_templates(adapters: dict[str, dict[str, Any]]) -> dict[str, Iterable[str]] | None:
    """Declare the message templates your channel adapter can render: ``{channel: names}``.

    ``adapters`` is the hub config's ``adapters:`` section (adapter name -> its raw settings,
    ``{}`` when there is none): declare your built-in templates always, and those a section
    configures (inline, a template folder) when it is there. Return ``None`` when you declare
    nothing (your channel renders any name, e.g. the payload carries the text).

    Template names that rules (``send_message``) and campaigns use are checked against these
    names by ``shopkeeper rules check`` and when the hub starts, so a misspelt or missing
    template is a warning naming file, line and the names known, not a message that fails at
    send time. **Every** implementation is called and the names of a channel are united
    (several plugins may each own a channel, and a plugin may add templates to another's
    channel); a channel no plugin declares is not checked.
    :func:`shopkeeper.plugins.message_templates` is the call.
    """
