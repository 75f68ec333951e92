"""Helpers for the rules tests: write rule files, make events, run them through an Ingestor."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.rules import RulesConfig, RulesService
from shopkeeper.rules.runtime import _event_types_with_rules

_keys = itertools.count(1)
EVENT_TYPES = _event_types_with_rules()
REPO = Path(__file__).resolve().parents[2]


def event(type_: str, data: dict[str, Any] | None = None, *, who: str = "ann@example.com", ts: float | None = None,
          **extra: Any) -> Any:
    raw = {"type": type_, "data": data or {}, "identities": {"email": who},
           "idempotency_key": f"k{next(_keys)}", "ts": ts if ts is not None else time.time() - 86400, **extra}
    return validate_event(raw, EVENT_TYPES)


def service_for_dir(d: Path, **kw: Any) -> RulesService:
    return RulesService(RulesConfig(directory=d, watch=False, **kw))


def write_rules(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def apply(store: Any, svc: RulesService, *events: Any) -> list[Any]:
    with Ingestor(store, processors=[svc.processor]) as ing:
        return ing.apply(list(events))


def traces(result: Any) -> list[dict[str, Any]]:
    return [o for o in result.outputs if isinstance(o, dict) and o.get("kind") == "rules"]
