"""A hook nobody documented or tested is a hook nobody can rely on: fail the build instead."""

from __future__ import annotations

import inspect
from pathlib import Path

from shopkeeper import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("shopkeeper_") and inspect.isfunction(f))


def test_there_are_hooks() -> None:
    assert "shopkeeper_deliver" in HOOKS and "shopkeeper_adapters" in HOOKS


def test_every_hook_has_a_docstring() -> None:
    missing = [h for h in HOOKS if len(inspect.getdoc(getattr(hookspecs, h)) or "") < 40]
    assert not missing, f"hookspecs without a real docstring: {missing}"


def test_every_hook_is_in_docs_plugins_md_with_an_example() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    missing = [h for h in HOOKS if f"### `{h}`" not in text]
    assert not missing, f"docs/plugins.md has no section for: {missing}"
    for h in HOOKS:
        section = text.split(f"### `{h}`", 1)[1].split("\n### ", 1)[0]
        assert "```python" in section and f"def {h}(" in section, f"docs/plugins.md: {h} has no example"


def test_every_hook_is_used_by_some_test() -> None:
    me = Path(__file__).resolve()
    corpus = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.resolve() != me)
    missing = [h for h in HOOKS if h not in corpus]
    assert not missing, f"hooks no test under tests/ exercises: {missing}"
