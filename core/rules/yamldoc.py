"""Rule documents as YAML with positions, and the values rule files write.

Every problem in a rule, segment or campaign file is reported as ``file:line:col: message``;
this module keeps the positions PyYAML knows (:class:`Marks`) beside the parsed value, and
reads the durations and times the files write. It knows nothing of rules: campaigns read
their files with it too.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

# -- diagnostics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    hint = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


# -- YAML with positions ---------------------------------------------------------------

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Marks:
    """Positions of every node of one document, by path (tuple of keys and indexes)."""

    def __init__(self, file: str, base: tuple[int, int] = (1, 1)) -> None:
        self.file = file
        self.base = base
        self.value: dict[tuple, tuple[int, int]] = {}
        self.key: dict[tuple, tuple[int, int]] = {}
        #: paths of plain scalars YAML 1.1 read as booleans although written yes/no/on/off/y/n
        self.yaml11_bools: dict[tuple, str] = {}

    def yaml11_under(self, path: tuple) -> tuple[tuple, str] | None:
        """The first value at or under ``path`` written ``yes``/``no``/``on``/``off`` (read as a boolean)."""
        n = len(path)
        for p, text in self.yaml11_bools.items():
            if p[:n] == path:
                return p, text
        return None

    def at(self, path: tuple, *, key: bool = False) -> tuple[int, int]:
        table = self.key if key else self.value
        p = path
        while p:
            if p in table:
                return table[p]
            if p in self.value:
                return self.value[p]
            p = p[:-1]
        return self.value.get((), self.base)


def _construct(node: yaml.Node, path: tuple, marks: Marks, loader: Any) -> Any:
    marks.value[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = loader.construct_object(k_node, deep=True)
            if isinstance(k, (list, dict)):
                k = str(k)
            kp = path + (k,)
            marks.key[kp] = (k_node.start_mark.line + 1, k_node.start_mark.column + 1)
            if k in out:
                raise _DupKey(k, marks.key[kp])
            out[k] = _construct(v_node, kp, marks, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(n, path + (i,), marks, loader) for i, n in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, bool) and not node.style and node.value.lower() not in ("true", "false"):
        marks.yaml11_bools[path] = node.value
    return value


class _DupKey(Exception):
    def __init__(self, key: Any, pos: tuple[int, int]) -> None:
        self.key = key
        self.pos = pos


def load_yaml(text: str, file: str) -> tuple[Any, Marks, list[Diagnostic]]:
    """Parse one YAML document; return (value, marks, errors)."""
    marks = Marks(file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, marks, []
        return _construct(node, (), marks, loader), marks, []
    except _DupKey as exc:
        return None, marks, [Diagnostic(file, exc.pos[0], exc.pos[1], f"duplicate key {exc.key!r}")]
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        msg = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        return None, marks, [Diagnostic(file, line, col, f"YAML error: {msg}")]
    except yaml.YAMLError as exc:
        return None, marks, [Diagnostic(file, 1, 1, f"YAML error: {exc}")]
    finally:
        loader.dispose()


# -- durations and times ---------------------------------------------------------------

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$")
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> int:
    """``30s``, ``30m``, ``24h``, ``7d``, ``2w`` -> µs.

    A bare number is refused: ``cooldown: 14`` silently meaning 14 *seconds* is the kind of
    mistake a rule author only finds in production."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 24h or 7d, not a boolean")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        n = str(value).strip()
        raise ValueError(f"{n} has no unit: write {n}s, {n}m, {n}h, {n}d or {n}w")
    if isinstance(value, str):
        m = _DUR.match(value)
        if m:
            return int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000)
    raise ValueError(f"{value!r} is not a duration such as 30m, 24h, 7d or 2w")


def parse_time(value: Any) -> int:
    if isinstance(value, _dt.datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        return int(dt.timestamp() * 1_000_000)
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).timestamp() * 1_000_000)
    if isinstance(value, str):
        try:
            dt = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
        return parse_time(dt)
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time")


def _plain(v: Any) -> Any:
    """A parsed YAML value as plain JSON-able data (dates as ISO text): what a rule's source keeps."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    return v
