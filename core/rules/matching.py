"""The matching engine behind Shopkeeper's rules: the only module that imports ``durable_rules``.

Everything above this module speaks in engine-neutral terms: a rule's condition is the one
condition tree (:mod:`shopkeeper.conditions.tree`) — :class:`Cmp`, :class:`All` and
:class:`AnyOf` over the fields of one *flat* message (a dict of JSON scalars the rules runtime
computes per event: event fields, customer facts, pre-computed history aggregates). An
:class:`Engine` compiles ``[(rule id, condition)]`` into a :class:`Program`;
``Program.match(message)`` returns the ids of the rules whose condition holds, in the order
given. That is the whole contract, so the engine can be replaced. This module is the
durable_rules *back end* of the one condition compiler (:mod:`shopkeeper.conditions`);
:class:`PythonEngine` runs the same trees through the Python back end and is used to
cross-check, and conditions durable_rules would judge differently (ordering texts, booleans) go
to the Python back end inside a :class:`DurableProgram`.

How :class:`DurableEngine` respects what was measured about ``durable_rules`` 2.0.28
(see DESIGN.md):

* **at most 1,024 live sessions per ruleset** — every message is asserted as a *fact* in
  one fixed session, the matched rules are read, and the fact is retracted again
  (``delete_state`` as a fallback): the engine keeps no state between events, whatever the
  number of customers. Rule state that must survive lives in the customer object.
* **not thread-safe** — every call into the engine holds one process-wide lock; we do not
  use ``durable.engine.Host``, whose background timer threads would call in concurrently.
* **unmatched and repeated messages raise** — every message gets a unique id; "not handled"
  and "observed" are treated as "nothing matched", never as errors.
* a ruleset cannot be shrunk in place, so :meth:`Program.close` deletes it; per-customer
  programs are cached and closed on eviction by the caller.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from ..conditions.python import compile_message, evaluate
from ..conditions.tree import OPS, All, AnyOf, Cmp, Condition, is_flat

_LOCK = threading.RLock()  # durable_rules is not thread-safe: one caller at a time per process


class Program(Protocol):
    def match(self, message: dict[str, Any]) -> list[str]: ...

    def close(self) -> None: ...


class Engine(Protocol):
    name: str

    def compile(self, rules: Sequence[tuple[str, Condition]]) -> Program: ...


# -- plain Python (reference semantics, fallback, cross-check) ---------------------------


class PythonProgram:
    """The rules compiled by the Python back end (:mod:`shopkeeper.conditions.python`)."""

    def __init__(self, rules: Sequence[tuple[str, Condition]]) -> None:
        self.rules = [(rid, compile_message(cond)) for rid, cond in rules]

    def match(self, message: dict[str, Any]) -> list[str]:
        return [rid for rid, fn in self.rules if fn(message)]

    def close(self) -> None:
        self.rules = []


class PythonEngine:
    """The same contract in plain Python: no limits, slower with many rules."""

    name = "python"

    def compile(self, rules: Sequence[tuple[str, Condition]]) -> PythonProgram:
        return PythonProgram(rules)


# -- durable_rules ---------------------------------------------------------------------

_DR_OPS = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
_names = itertools.count(1)
_ids = itertools.count(1)
_SID = "0"  # the one session every message is evaluated in (retracted right after)


def _to_durable(cond: Condition) -> dict[str, Any]:
    if isinstance(cond, Cmp):
        if cond.op == "eq":
            return {cond.field: cond.value}
        if cond.op == "exists":
            return {"$ex": {cond.field: 1}}
        if cond.op == "missing":
            return {"$nex": {cond.field: 1}}
        return {_DR_OPS[cond.op]: {cond.field: cond.value}}
    parts = [_to_durable(c) for c in cond.items]
    if not parts:
        # an empty All is always true, an empty AnyOf never: express both on the id field
        return {"$ex": {"id": 1}} if isinstance(cond, All) else {"$nex": {"id": 1}}
    if len(parts) == 1:
        return parts[0]
    return {"$and" if isinstance(cond, All) else "$or": parts}


def _needs_python(cond: Condition) -> bool:
    """Conditions durable_rules would judge differently from the reference semantics, or cannot
    express (a tree that is not field-against-constant under all/any)."""
    if not is_flat(cond):
        return True
    if isinstance(cond, Cmp):
        v = cond.value
        # durable compares strings with </> and mixes bools and numbers; keep those in Python
        return cond.op in ("gt", "gte", "lt", "lte") and not (isinstance(v, (int, float)) and not isinstance(v, bool))
    return any(_needs_python(c) for c in cond.items)


def _json_encoder() -> Any:
    """``json.dumps(msg, ensure_ascii=False, default=str)`` for a flat message, without building
    an encoder per call (half the time of posting a fact was ``json.dumps``'s set-up)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, default=str).encode
    enc = make(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda msg: "".join(enc(msg, 0))


_encode = _json_encoder()


#: Rules per durable_rules ruleset. Its C engine refuses a fact that activates more than 64
#: rules of one ruleset (``ERR_MAX_STACK_SIZE``, error 303: a hub with 500 rules on ``order``
#: could not assert an order at all), so the rules are split into rulesets of this size and a
#: fact is asserted into each.
RULES_PER_RULESET = 64


class DurableProgram:
    """durable_rules rulesets of at most :data:`RULES_PER_RULESET` rules; matching asserts one
    fact into each and retracts it again."""

    def __init__(self, rules: Sequence[tuple[str, Condition]]) -> None:
        import durable_rules_engine as dre  # the C engine; durable.engine.Host is not used

        self._dre = dre
        self._by_dr: dict[str, str] = {}
        self._order: dict[str, int] = {}
        self._python: list[tuple[str, Any]] = []
        definitions: list[dict[str, Any]] = []
        for i, (rid, cond) in enumerate(rules):
            self._order[rid] = i
            if _needs_python(cond):
                self._python.append((rid, compile_message(cond)))
                continue
            key = f"r{i}"
            self._by_dr[key] = rid
            if not definitions or len(definitions[-1]) >= RULES_PER_RULESET:
                definitions.append({})
            # "_m" marks our messages: durable_rules also asserts a session-state fact that
            # a "missing"/"exists" test would otherwise see
            definitions[-1][key] = {"all": [{"m": {"$and": [{"_m": 1}, _to_durable(cond)]}}]}
        self._handles: list[Any] = []
        with _LOCK:
            for definition in definitions:
                self._handles.append(dre.create_ruleset(f"shopkeeper{next(_names)}", json.dumps(definition)))

    def match(self, message: dict[str, Any]) -> list[str]:
        out: list[str] = []
        if self._handles:
            dre = self._dre
            msg = dict(message)
            msg["sid"] = _SID
            msg["id"] = next(_ids)  # unique per post: a repeated payload would be "observed"
            msg["_m"] = 1
            payload = _encode(msg)
            with _LOCK:
                for handle in self._handles:
                    self._match_one(dre, handle, payload, out)
        if self._python:
            out.extend(rid for rid, fn in self._python if fn(message))
        if len(out) > 1:
            # a rule is activated once per branch of an ``$or`` that holds: the answer is a set
            out = sorted(set(out), key=self._order.__getitem__)
        return out

    def _match_one(self, dre: Any, handle: Any, payload: str, out: list[str]) -> None:
        res = dre.assert_fact(handle, payload)
        if res[0] == 1:
            return  # not handled: no rule's pattern took the fact, and the engine did not keep it
        try:
            if res[0] == 0:  # 2 = observed: nothing matched either
                state = res[1]
                got = dre.start_action_for_state(handle, state)
                while got:
                    for key in _action_keys(got[1]):
                        rid = self._by_dr.get(key)
                        if rid is not None:
                            out.append(rid)
                    nxt = dre.complete_and_start_action(handle, state)
                    got = (got[0], nxt) if nxt else None
        finally:
            try:
                dre.retract_fact(handle, payload)
            except Exception:
                try:
                    dre.delete_state(handle, _SID)
                except Exception:
                    pass

    def close(self) -> None:
        with _LOCK:
            for handle in self._handles:
                try:
                    self._dre.delete_ruleset(handle)
                except Exception:
                    pass
        self._handles = []

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _action_keys(result: str) -> Any:
    """The rule key of one action's result, ``{"r3":{"m":{…the message…}}}``: one action is one
    rule (durable's own host, ``Ruleset._flush_actions``, takes the first key alone) and our keys
    are ``r<n>``, so the key is read off the front instead of parsing the message back (~3 µs per
    matched rule); any other shape is parsed."""
    if result.startswith('{"r'):
        end = result.find('":', 3)
        if end > 0 and result[3:end].isdigit() and result.startswith('{"m":', end + 2):
            return (result[2:end],)
    return json.loads(result)


class DurableEngine:
    name = "durable_rules"

    def compile(self, rules: Sequence[tuple[str, Condition]]) -> DurableProgram:
        return DurableProgram(rules)


def default_engine() -> Engine:
    return DurableEngine()


__all__ = ["Cmp", "All", "AnyOf", "Condition", "Engine", "Program", "DurableEngine", "PythonEngine",
           "default_engine", "evaluate", "OPS"]
