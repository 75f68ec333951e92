"""Adapter configuration: the validated schema of an adapter's section in the hub config file.

An adapter declares a ``Config`` dataclass; :func:`validate_config` builds it from the raw
mapping (a config-file section or a ``--config`` file of ``shopkeeper adapter run``) and
reports *every* problem as ``adapter.<name>.<field>: reason`` so an operator fixes them all
in one go rather than one per restart.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class AdapterConfigError(ValueError):
    """An adapter's config section is invalid; ``errors`` are ``adapter.<name>.<field>: reason``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclasses.dataclass
class NoConfig:
    """An adapter without settings."""


def _check_type(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, coerced value) for the small set of types config files use."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is type(None) and value is None:
                return True, None
            ok, v = _check_type(value, arm)
            if ok:
                return True, v
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        if args and args[0] is not Ellipsis:
            out = []
            for x in value:
                ok, v = _check_type(x, args[0])
                if not ok:
                    return False, value
                out.append(v)
            value = out
        return True, tuple(value) if (origin or hint) is tuple else list(value)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    return True, value


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text", dict: "a mapping"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def validate_config(name: str, schema: type, raw: dict[str, Any] | None) -> Any:
    """Build ``schema`` (a dataclass) from ``raw``, or raise :class:`AdapterConfigError`.

    Every problem is reported, each as ``adapter.<name>.<field>: reason``.
    """
    raw = dict(raw or {})
    raw.pop("enabled", None)
    where = f"adapter.{name}"
    errors: list[str] = []
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{where}: Config must be a dataclass, not {schema!r}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in sorted(set(raw) - set(fields)):
        import difflib

        hint = difflib.get_close_matches(key, list(fields), n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(sorted(fields)) or 'none'})"
        errors.append(f"{where}.{key}: unknown setting{more}")
    kwargs: dict[str, Any] = {}
    for fname, f in fields.items():
        if fname not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                errors.append(f"{where}.{fname}: required ({_type_name(hints[fname])})")
            continue
        ok, value = _check_type(raw[fname], hints[fname])
        if not ok:
            errors.append(f"{where}.{fname}: must be {_type_name(hints[fname])}, not {type(raw[fname]).__name__} "
                          f"{raw[fname]!r}")
            continue
        kwargs[fname] = value
    if errors:
        raise AdapterConfigError(errors)
    try:
        return schema(**kwargs)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        field_, sep, reason = text.partition(": ")
        raise AdapterConfigError([f"{where}.{field_}: {reason}" if sep and field_ in fields else f"{where}: {text}"]
                                 ) from exc


class ListenAddress:
    """For adapter ``Config`` dataclasses that serve HTTP: a ``listen: host:port`` setting,
    checked by ``check_listen()`` (call it from ``__post_init__``) and split by ``host``/``port``."""

    listen: str

    def check_listen(self) -> None:
        _host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"listen: {self.listen!r} must be host:port")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def load_config_file(path: str | None, name: str) -> dict[str, Any]:
    """The ``adapters.<name>`` section of a hub config file, or the whole file if it has none."""
    if not path:
        return {}
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if isinstance(data.get("adapters"), dict):
        return dict(data["adapters"].get(name) or {})
    return dict(data)


__all__ = ["AdapterConfigError", "NoConfig", "ListenAddress", "validate_config", "load_config_file"]
