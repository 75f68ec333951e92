"""The action vocabulary (``then:`` steps), templated values, and what actions leave on a customer.

An action is an :class:`ActionDef`: a name, typed parameters and a ``run(ctx, params)``
function. Built-ins are below; plugins add theirs through ``shopkeeper_rule_actions``::

    from shopkeeper import hookimpl
    from shopkeeper.rules import ActionDef, Param

    def _loyalty_points(ctx, params):
        ctx.customer.set_score("loyalty_points", ctx.customer.scores.get("loyalty_points", 0) + params["points"],
                               ctx.source)
        return f"+{params['points']} points"

    @hookimpl
    def shopkeeper_rule_actions():
        return [ActionDef("give_points", (Param("points", "number", required=True),), _loyalty_points,
                          main="points", description="credit loyalty points")]

``run`` receives parameters with templates already rendered and returns a short text (or
dict) describing the effect, which goes into the trace. Raising records a failure for that
rule and event; the rule's other effects are rolled back, the event is kept.

Templates: a parameter text may contain ``{event.amount}``, ``{customer.orders}``,
``{fact.preferred_channel}``, ``{score.clv:.0f}``, ``{trait.first_name}``, ``{rule.name}``.
A value that is exactly one placeholder keeps its type (a number stays a number). A
placeholder without a value fails the action (:class:`TemplateValueMissing`) unless it names
a default: ``{trait.first_name|there}`` (``{trait.first_name|}`` for empty text). Nothing
else is evaluated: no attribute access, no calls — safe for text written by marketers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import paths

# -- templates -------------------------------------------------------------------------

#: {path}, {path:format}, {path|default}, {path|default:format}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.]*)(?:\|([^{}:]*))?(?::([^{}]*))?\}")
TEMPLATE_ROOTS = {"event", "customer", "fact", "score", "trait", "rule", "timer"}
_EVENT_ATTRS = {"type", "channel", "ts", "touchpoint", "key", "at"}


def template_paths(text: str) -> str:
    """'' if every placeholder in ``text`` names something a template may use, else why not."""
    for m in _PLACEHOLDER.finditer(text):
        path = m.group(1)
        if not path:
            continue
        root, _, rest = path.partition(".")
        if root not in TEMPLATE_ROOTS:
            from .yamldoc import did_you_mean

            known = ", ".join(sorted(TEMPLATE_ROOTS))
            return f"unknown name {root!r}{did_you_mean(root, TEMPLATE_ROOTS)} (use {known})"
        if not rest and root not in ("rule",):
            return f"{{{root}}} needs a field, e.g. {{{root}.{'amount' if root == 'event' else 'id'}}}"
        if m.group(3):
            try:
                format(1.5, m.group(3))
            except ValueError:
                return f"bad format {m.group(3)!r} in {{{path}:{m.group(3)}}}"
    if re.search(r"(?<!\{)\{(?![{A-Za-z_])", text.replace("{{", "")):
        return "a '{' that starts no placeholder (write {{ for a literal brace)"
    return ""


class TemplateValueMissing(LookupError):
    """A placeholder has no value for this customer and event.

    Rendering it as empty text would send "Dear ," or "Big order : 0.00"; instead the action
    fails (the rule's effects are taken back, the failure is recorded with this message)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"template {{{path}}} has no value for this customer and event")
        self.path = path


def render(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Fill the placeholders of ``value``; :class:`TemplateValueMissing` when one has no value."""
    if isinstance(value, dict):
        return {k: render(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, lookup) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    m = _PLACEHOLDER.fullmatch(value)
    if m and m.group(1) and not m.group(3):
        got = lookup(m.group(1))
        if got is None:
            if m.group(2) is None:
                raise TemplateValueMissing(m.group(1))
            return m.group(2)
        return got

    def sub(mm: re.Match) -> str:
        if mm.group(0) == "{{":
            return "{"
        if mm.group(0) == "}}":
            return "}"
        v = lookup(mm.group(1))
        if v is None:
            if mm.group(2) is None:
                raise TemplateValueMissing(mm.group(1))
            return mm.group(2)
        if mm.group(3):
            try:
                return format(v, mm.group(3))
            except (ValueError, TypeError):
                return str(v)
        return str(v)

    return _PLACEHOLDER.sub(sub, value)


# -- definitions -----------------------------------------------------------------------

_KINDS = ("str", "number", "bool", "mapping", "duration", "any")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = "any"  # str | number | bool | mapping | duration | any
    required: bool = False
    default: Any = None
    help: str = ""
    #: the only values a text parameter may take (``alert_agent.priority``); None = any text
    choices: tuple[str, ...] | None = None

    def check(self, v: Any) -> str:
        """'' when ``v`` fits, else what is wrong (templates are accepted for text and numbers).

        Text means text: ``queue: 42`` is refused rather than quietly becoming ``"42"``, so a
        value that YAML read as a number or a boolean is noticed where it was written."""
        templ = isinstance(v, str) and "{" in v
        if self.kind == "str" and not isinstance(v, str):
            hint = f' (write "{v}" in quotes if you mean the text)' if isinstance(v, (int, float)) else ""
            return f"must be text, not {type(v).__name__} {v!r}{hint}"
        if self.choices is not None and isinstance(v, str) and not templ and v not in self.choices:
            from .yamldoc import did_you_mean

            return f"must be one of {', '.join(self.choices)}, not {v!r}{did_you_mean(v, self.choices)}"
        if self.kind == "number" and not templ and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"must be a number, not {type(v).__name__} {v!r}"
        if self.kind == "bool" and not isinstance(v, bool):
            return f"must be true or false, not {v!r}"
        if self.kind == "mapping" and not isinstance(v, dict):
            return f"must be a mapping of name: value, not {type(v).__name__}"
        if self.kind == "duration":
            from .yamldoc import parse_duration

            try:
                parse_duration(v)
            except ValueError as exc:
                return str(exc)
        return ""


@dataclass
class ActionDef:
    name: str
    params: tuple[Param, ...]
    run: Callable[[ActionContext, dict[str, Any]], Any]
    main: str | None = None  # the parameter a bare value fills: `- tag: vip`
    description: str = ""
    defines: str | None = None  # fact | score | segment | tag: what its `name` parameter introduces

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def normalise(self, params: Any) -> Any:
        if params is None:
            return {}
        if isinstance(params, dict):
            return dict(params)
        if self.main is not None:
            return {self.main: params}
        return params

    def signature(self) -> str:
        return "{" + ", ".join(p.name + ("" if p.required else "?") for p in self.params) + "}"

    def with_defaults(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {p.name: p.default for p in self.params if not p.required and p.default is not None}
        out.update(params)
        return out


@dataclass
class Vocabulary:
    actions: dict[str, ActionDef] = field(default_factory=dict)

    @classmethod
    def builtin(cls, extra: list[Any] | None = None) -> Vocabulary:
        v = cls({a.name: a for a in BUILTIN_ACTIONS})
        for a in extra or ():
            v.add(a)
        return v

    def add(self, a: Any) -> None:
        if not isinstance(a, ActionDef):
            raise TypeError(f"shopkeeper_rule_actions must return ActionDef objects, not {type(a).__name__}")
        self.actions[a.name] = a


# -- what actions see ------------------------------------------------------------------


@dataclass
class ActionContext:
    folders: Any
    customer: Any
    event: dict[str, Any]  # type, channel, ts, touchpoint, key, data
    rule: Any
    version: str
    now: int
    index: int = 0  # which step of the rule
    emit: Callable[[str, dict[str, Any]], Any] | None = None
    outputs: list[Any] | None = None  # EventResult.outputs: where change-feed entries go
    undo: list[Callable[[], None]] | None = None  # how to take back writes outside the customer's dicts

    @property
    def source(self) -> str:
        return f"rule:{self.rule.key}@{self.version}"

    def provenance(self, what: str) -> None:
        self.customer.put_rule_state("provenance", what, {
            "rule": self.rule.key, "version": self.version, "event": self.event.get("key"),
            "event_type": self.event.get("type"), "at": self.now})

    def lookup(self, path: str) -> Any:
        return lookup(self, path)

    def effect_id(self) -> str:
        ev_id = self.event.get("idempotency_key") or self.event.get("key")
        raw = f"{self.customer.id}|{ev_id}|{self.rule.key}|{self.index}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]


def state(customer: Any) -> dict[str, Any]:
    rs = customer.rule_state
    return rs


def lookup(ctx: ActionContext, path: str) -> Any:
    root, _, rest = path.partition(".")
    c = ctx.customer
    if root == "event":
        if rest in _EVENT_ATTRS and rest in ctx.event:
            return ctx.event[rest]
        if rest == "at":
            import datetime as dt

            return dt.datetime.fromtimestamp(ctx.event["ts"] / 1e6, dt.UTC).isoformat(timespec="seconds")
        fld = rest[5:] if rest.startswith("data.") else rest
        return _dig(ctx.event.get("data") or {}, fld)
    if root == "customer":
        if rest == "id":
            return c.id
        if rest in c.hard:
            return c.hard[rest]
        if rest == "email":
            emails = c.identities_in("email")
            return emails[0] if emails else None
        return c.traits.get(rest)
    if root in ("fact", "score"):
        return paths.read(c, paths.parse(path).key)  # the one accessor rules and conditions use
    if root == "trait":
        return _dig(c.traits, rest)
    if root == "rule":
        return {"": ctx.rule.name, "name": ctx.rule.name, "version": ctx.version,
                "description": ctx.rule.description}.get(rest)
    return None


def _dig(d: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(d, dict):
            d = d.get(part)
        else:
            return None
    return d


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{what}: {v!r} is not a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {v!r} is not a number") from None


# -- built-in actions ------------------------------------------------------------------


def _set_fact(ctx: ActionContext, p: dict[str, Any]) -> str:
    ctx.customer.set_soft_fact(p["name"], p["value"], ctx.source, at=ctx.now)
    ctx.provenance(f"fact:{p['name']}")
    return f"fact {p['name']} = {p['value']!r}"


def _clear_fact(ctx: ActionContext, p: dict[str, Any]) -> str:
    ctx.customer.clear_soft_fact(p["name"])
    ctx.provenance(f"fact:{p['name']}")
    return f"fact {p['name']} cleared"


def _add_score(ctx: ActionContext, p: dict[str, Any]) -> str:
    by = _num(p.get("by", 1), "by")
    old = ctx.customer.scores.get(p["name"])
    new = (old.value if old is not None else 0.0) + by
    if p.get("max") is not None:
        new = min(new, _num(p["max"], "max"))
    if p.get("min") is not None:
        new = max(new, _num(p["min"], "min"))
    ctx.customer.set_score(p["name"], round(new, 6), ctx.source, at=ctx.now)
    ctx.provenance(f"score:{p['name']}")
    return f"score {p['name']} {'+' if by >= 0 else ''}{by:g} = {new:g}"


def _set_score(ctx: ActionContext, p: dict[str, Any]) -> str:
    v = _num(p["value"], "value")
    ctx.customer.set_score(p["name"], v, ctx.source, at=ctx.now)
    ctx.provenance(f"score:{p['name']}")
    return f"score {p['name']} = {v:g}"


def _tag(ctx: ActionContext, p: dict[str, Any]) -> str:
    ctx.customer.put_rule_state("tags", str(p["name"]), {"rule": ctx.rule.key, "version": ctx.version, "at": ctx.now})
    return f"tagged {p['name']}"


def _untag(ctx: ActionContext, p: dict[str, Any]) -> str:
    ctx.customer.pop_rule_state("tags", str(p["name"]))
    ctx.provenance(f"tag:{p['name']}")
    return f"untagged {p['name']}"


def _join(ctx: ActionContext, p: dict[str, Any]) -> str:
    joined = ctx.customer.join_segment(str(p["name"]), at=ctx.now)
    if joined:
        ctx.provenance(f"segment:{p['name']}")
    return f"joined segment {p['name']}" if joined else f"already in segment {p['name']}"


def _leave(ctx: ActionContext, p: dict[str, Any]) -> str:
    left = ctx.customer.leave_segment(str(p["name"]))
    if left:
        ctx.provenance(f"segment:{p['name']}")
    return f"left segment {p['name']}" if left else f"not in segment {p['name']}"


def _propose(kind: str) -> Callable[[ActionContext, dict[str, Any]], str]:
    def run(ctx: ActionContext, p: dict[str, Any]) -> str:
        from .yamldoc import parse_duration

        expires = ctx.now + parse_duration(p["valid_for"]) if p.get("valid_for") else None
        pid = str(p["id"])
        ctx.customer.put_rule_state("proposals", f"{kind}:{pid}", {
            "kind": kind, "id": pid, "score": _num(p.get("score", 1.0), "score"),
            "reason": str(p.get("reason") or f"{ctx.rule.name}: {ctx.rule.description}".strip(": ")),
            "payload": dict(p.get("payload") or {}), "placement": p.get("placement"),
            "rule": ctx.rule.key, "version": ctx.version, "event": ctx.event.get("key"),
            "at": ctx.now, "expires": expires,
        })
        return f"proposed {kind} {pid}"

    return run



def enqueue_intent(ctx: ActionContext, intent: dict[str, Any]) -> dict[str, Any]:
    """Record a message intent in the customer's outbox (:func:`shopkeeper.outbox.enqueue`; the
    adapters deliver it). The one outbox: a second one in ``rule_state['outbox']``, written when
    that module was missing (it never is), was removed; no store ever held one."""
    from .. import outbox as _outbox

    iid = "rx" + ctx.effect_id()
    payload = {**intent.get("payload", {}), "rule": ctx.rule.key, "rules_version": ctx.version}
    item = _outbox.enqueue(ctx.folders, ctx.customer, channel=intent["channel"], template=intent["template"],
                           purpose=intent.get("purpose", "marketing"), payload=payload, source=ctx.source,
                           intent_id=iid, at=ctx.now, outputs=ctx.outputs,
                           expires_at=int(intent.get("expires_at") or 0))
    if ctx.undo is not None:
        folders, customer, channel = ctx.folders, ctx.customer, intent["channel"]

        def take_back() -> None:
            box = _outbox.outbox_of(customer)
            if box is not None:
                box.pop(iid, None)
            idx = _outbox.index(folders)
            if idx is not None:
                idx.pop((channel, iid), None)

        ctx.undo.append(take_back)
    return {"id": item.id, "channel": item.channel, "template": item.template}


def _send(ctx: ActionContext, p: dict[str, Any]) -> str:
    from .. import contact

    channel, purpose = str(p["channel"]), str(p.get("purpose") or "marketing")
    if p.get("respect_consent", True):
        # the one contact policy (consent, complaint/bounce suppression); quiet hours and caps are
        # asked when an adapter claims the message, with the whole policy again (respect_consent:
        # false only skips this early check)
        verdict = contact.check(ctx.customer, channel, purpose, now=ctx.now, timing=False)
        if not verdict:
            return f"suppressed {channel} message {p['template']}: {verdict.code}: {verdict.detail}"
    from .yamldoc import parse_duration

    # valid_for: not sent after then, nor deferred past it by quiet hours (-> quiet_hours_expired)
    expires = ctx.now + parse_duration(p["valid_for"]) if p.get("valid_for") else 0
    it = enqueue_intent(ctx, {"channel": channel, "template": str(p["template"]), "purpose": purpose,
                              "payload": dict(p.get("payload") or {}), "expires_at": expires})
    return f"queued {channel} message {p['template']} ({it['id']})"


def _alert(ctx: ActionContext, p: dict[str, Any]) -> str:
    it = enqueue_intent(ctx, {"channel": "agent", "template": "alert", "purpose": "service",
                              "payload": {"message": str(p["message"]), "priority": str(p.get("priority") or "normal"),
                                          "queue": str(p.get("queue") or "default")}})
    return f"alerted agents ({p.get('queue') or 'default'}): {p['message']} ({it['id']})"


def _emit(ctx: ActionContext, p: dict[str, Any]) -> str:
    if ctx.emit is None:
        raise RuntimeError("emit_event is not available here")
    key = ctx.emit(str(p["type"]), dict(p.get("data") or {}))
    return f"emitted {p['type']} event ({key})"


_N, _S = "name", "str"
#: what an agent's screen knows how to show
ALERT_PRIORITIES = ("low", "normal", "high")
BUILTIN_ACTIONS: tuple[ActionDef, ...] = (  # each can be taken back by Snapshot (see runtime)
    ActionDef("set_fact", (Param(_N, _S, True), Param("value", "any", True)), _set_fact,
              description="set a soft fact on the customer (with this rule as its source)", defines="fact"),
    ActionDef("clear_fact", (Param(_N, _S, True),), _clear_fact, main=_N, description="remove a soft fact"),
    ActionDef("add_score", (Param(_N, _S, True), Param("by", "number", default=1), Param("min", "number"),
                            Param("max", "number")), _add_score,
              main=_N, description="add to a score (negative to subtract), optionally clamped", defines="score"),
    ActionDef("set_score", (Param(_N, _S, True), Param("value", "number", True)), _set_score,
              description="set a score", defines="score"),
    ActionDef("tag", (Param(_N, _S, True),), _tag, main=_N, description="put a tag on the customer", defines="tag"),
    ActionDef("untag", (Param(_N, _S, True),), _untag, main=_N, description="remove a tag"),
    ActionDef("join_segment", (Param(_N, _S, True),), _join, main=_N, description="add the customer to a segment",
              defines="segment"),
    ActionDef("leave_segment", (Param(_N, _S, True),), _leave, main=_N, description="remove from a segment"),
    ActionDef("propose_offer", (Param("id", _S, True), Param("score", "number", default=1.0), Param("reason", _S),
                                Param("payload", "mapping"), Param("valid_for", "duration"),
                                Param("placement", _S)), _propose("offer"), main="id",
              description="offer Decide returns to touch points (until valid_for has passed)"),
    ActionDef("propose_message", (Param("id", _S, True), Param("score", "number", default=1.0), Param("reason", _S),
                                  Param("payload", "mapping"), Param("valid_for", "duration"),
                                  Param("placement", _S)), _propose("message"), main="id",
              description="message Decide returns to touch points (until valid_for has passed)"),
    ActionDef("send_message", (Param("channel", _S, True), Param("template", _S, True), Param("purpose", _S),
                               Param("payload", "mapping"), Param("respect_consent", "bool"),
                               Param("valid_for", "duration")), _send,
              description="queue a message in the customer's outbox (skipped without consent; quiet hours "
                          "defer it, unless valid_for has passed by then)"),
    ActionDef("alert_agent", (Param("message", _S, True), Param("priority", _S, choices=ALERT_PRIORITIES),
                              Param("queue", _S)), _alert,
              main="message", description="put an alert on the agents' screens (outbox channel 'agent')"),
    ActionDef("emit_event", (Param("type", _S, True), Param("data", "mapping")), _emit, main="type",
              description="record a new event for this customer (rules see it too)"),
)


__all__ = ["ActionDef", "Param", "Vocabulary", "ActionContext", "BUILTIN_ACTIONS", "render", "template_paths",
           "TemplateValueMissing", "ALERT_PRIORITIES",
           "enqueue_intent", "lookup"]
