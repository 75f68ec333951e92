"""Customer value paths: the one spelling, its old aliases, and the one accessor behind them.

Rules (``fact.vip``), segment and offer conditions, campaign audiences, templates and
``FindCustomers`` all name a customer's values the same way (docs/rules.md, "Customer values"):

======================  ==========  =====================================================
path                    field key   value
======================  ==========  =====================================================
``customer.<fact>``     ``c__``     a kept fact: ``orders``, ``total_spend``, ``last_seen``…
``customer.count.<t>``  ``n__``     how many ``<t>`` events the customer has had
``fact.<name>``         ``f__``     a soft fact's value
``score.<name>``        ``s__``     a score's value (``score.clv``, ``score.clv.value``)
``trait.<name>``        ``a__``     a profile trait
``segment.<name>``      ``g__``     true when the customer is in the segment
``tag.<name>``          ``t__``     true when a rule tagged the customer
``identity.<ns>``       ``i__``     true when the customer has an identity in namespace ``<ns>``
``consent.<ch>[.<p>]``  ``k__``     true only on an explicit grant (purpose defaults to marketing)
======================  ==========  =====================================================

The rules' spelling was chosen because it is the one most written (every rule file, campaign
audience and template uses it), it reads as English (``fact.vip``, ``score.clv``), and the field
keys it maps to are what the rules engine's message already carries. The older spellings are
aliases: ``hard.x``/bare ``x`` (FindCustomers), ``soft.x``, ``scores.x``, ``traits.x``,
``counts.x`` (FindCustomers, imports) and ``f:x``; checkers warn about each with the new spelling.

:data:`_READ` holds, per field-key prefix, the one Python expression that reads the value from a
customer ``c`` (``n``: the name; ``x``: a temporary). :func:`read` runs it (compiled once per
prefix); the segment condition compiler inlines it into its generated code (:func:`source`),
so every consumer reads a value with the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

#: field-key prefix -> the expression reading the value from customer ``c`` (``{n}``: the name)
_READ: dict[str, str] = {
    "c": "c.hard.get({n})",
    "n": "c.type_counts.get({n}, 0)",
    "f": "(None if ({x} := c.soft.get({n})) is None else {x}.value)",
    "s": "(None if ({x} := c.scores.get({n})) is None else {x}.value)",
    "a": "c.traits.get({n})",
    "g": "({n} in c.segments)",
    "t": "({n} in (c.rule_state.get('tags') or ()))",
    "i": "bool(c.identities_in({n}))",
}

#: canonical head -> field-key prefix (``customer.count.`` and ``consent.`` are handled apart)
HEADS = {"customer": "c", "fact": "f", "score": "s", "trait": "a", "segment": "g", "tag": "t", "identity": "i",
         "consent": "k"}

#: old heads -> the canonical head they stand for
ALIASES = {"hard": "customer", "soft": "fact", "scores": "score", "traits": "trait", "counts": "customer.count"}


class PathError(ValueError):
    """A path that names no customer value; the message says what is known."""


class Path(NamedTuple):
    """A parsed path: its canonical spelling, its field key, and the old spelling if one was used."""

    canonical: str
    key: str
    alias: str | None = None  # the deprecated spelling written, or None

    @property
    def deprecation(self) -> str | None:
        """``deprecated spelling `soft.vip`: write `fact.vip``` when an alias was used."""
        if self.alias is None:
            return None
        return f"deprecated spelling `{self.alias}`: write `{self.canonical}`"


def parse(path: str, *, bare_hard: bool = False) -> Path:
    """The canonical path and field key of ``path`` (an alias is accepted and remembered).

    ``bare_hard``: a name without a dot is a kept fact (``orders``: FindCustomers' old spelling).
    Raises :class:`PathError` for anything else."""
    if not isinstance(path, str) or not path:
        raise PathError(f"{path!r}: a path such as customer.orders, fact.NAME or score.NAME")
    alias: str | None = None
    if path.startswith("f:"):
        alias, path = path, "fact." + path[2:]
    head, _, rest = path.partition(".")
    if not rest and bare_hard and head:
        alias, head, rest = path, "customer", head
    elif head in ALIASES and rest:
        alias = alias or path
        head, _, more = f"{ALIASES[head]}.{rest}".partition(".")
        rest = more
    if not rest:
        raise PathError(f"{path!r}: name a value after `{head}.`" if head in HEADS else _unknown(path))
    if head == "customer" and rest.startswith("count."):
        return Path(f"customer.{rest}", "n__" + rest[6:], alias)
    if head == "consent":
        ch, _, purpose = rest.partition(".")
        return Path(f"consent.{rest}", f"k__{ch}__{purpose or 'marketing'}", alias)
    prefix = HEADS.get(head)
    if prefix is None:
        raise PathError(_unknown(path))
    return Path(f"{head}.{rest}", f"{prefix}__{rest}", alias)


def _unknown(path: str) -> str:
    return (f"{path!r} is not a customer value (use customer.<fact>, customer.count.<event type>, fact.<name>, "
            "score.<name>, trait.<name>, segment.<name>, tag.<name>, identity.<namespace> or consent.<channel>)")


def source(key: str, lit: Callable[[Any], str], tmp: Callable[[], str]) -> str:
    """The Python expression reading field ``key`` of customer ``c``, for generated code (``lit``
    turns the name into a literal, ``tmp`` gives a fresh temporary)."""
    prefix, _, name = key.partition("__")
    if prefix == "k":
        ch, _, purpose = name.partition("__")
        return f"c.may_contact({lit(ch)}, {lit(purpose or 'marketing')})"
    return _READ[prefix].format(n=lit(name), x=tmp())


def _reader(prefix: str) -> Callable[[Any, str], Any]:
    if prefix == "k":
        def consent(c: Any, n: str) -> bool:
            ch, _, purpose = n.partition("__")
            return bool(c.may_contact(ch, purpose or "marketing"))
        return consent
    ns: dict[str, Any] = {"__builtins__": {"bool": bool}}
    exec(f"def _read(c, n):\n    return {_READ[prefix].format(n='n', x='x')}\n", ns)  # noqa: S102 - our own text
    return ns["_read"]


#: field-key prefix -> ``f(customer, name)``: the compiled accessors
READERS: dict[str, Callable[[Any, str], Any]] = {p: _reader(p) for p in (*_READ, "k")}


def read(customer: Any, key: str) -> Any:
    """The value field ``key`` (``f__vip``) names on ``customer``; None when it has none."""
    prefix, _, name = key.partition("__")
    return READERS[prefix](customer, name)


def value(customer: Any, path: str, *, bare_hard: bool = False) -> Any:
    """The value ``path`` (any spelling) names on ``customer``; None when it has none."""
    return read(customer, parse(path, bare_hard=bare_hard).key)
