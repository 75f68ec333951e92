"""A hook nobody documented or tested is a hook nobody can rely on: fail the build instead."""

from __future__ import annotations

import ast
import inspect
import re
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


def _hook_tests() -> dict[str, str]:
    """``test_hook_<hook>`` functions under tests/ -> the source of their bodies (not the name line),
    and the ``def shopkeeper_...(`` lines of the plugin classes their module defines."""
    out: dict[str, str] = {}
    for p in sorted((ROOT / "tests").rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_hook_"):
                impls = [f"def {n.name}(" for n in ast.walk(ast.parse(text))
                         if isinstance(n, ast.FunctionDef) and n.name.startswith("shopkeeper_")]
                out[node.name] = "\n".join([ast.get_source_segment(text, b) or "" for b in node.body] + impls)
    return out


def test_every_hook_has_a_test_named_for_it_that_exercises_it() -> None:
    """As datasette: each hook has ``test_hook_<name>``, and that test calls the hook in its body or
    its module implements it; a mention in a comment elsewhere no longer counts."""
    tests = _hook_tests()
    missing = [h for h in HOOKS if f"test_hook_{h}" not in tests]
    assert not missing, f"hooks without a test named test_hook_<hook>: {missing}"
    idle = [h for h in HOOKS if h not in tests[f"test_hook_{h}"]]
    assert not idle, f"test_hook_<hook> tests that neither call the hook nor sit beside an implementation: {idle}"
    stray = sorted(set(tests) - {f"test_hook_{h}" for h in HOOKS})
    assert not stray, f"test_hook_ tests for no hook in hookspecs.py (renamed or misspelled?): {stray}"


def _params(signature: str) -> list[str]:
    """Parameter names of a ``def`` parameter list as written (annotations and defaults dropped)."""
    tree = ast.parse(f"def f({signature}): pass")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    return [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs if a.arg != "self"]


def test_documented_signatures_match_the_hookspecs() -> None:
    """The example in docs/plugins.md takes the hookspec's parameters, by name (pluggy passes
    keyword arguments: a misspelled parameter is never filled)."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    wrong = []
    for h in HOOKS:
        section = text.split(f"### `{h}`", 1)[1].split("\n### ", 1)[0]
        m = re.search(rf"def {h}\((.*?)\)\s*(?:->[^:]*)?:", section, re.S)
        assert m, f"docs/plugins.md: no example def for {h}"
        documented = _params(m.group(1))
        spec = list(inspect.signature(getattr(hookspecs, h)).parameters)
        if documented != spec:
            wrong.append(f"{h}: docs take {documented}, the hookspec {spec}")
    assert not wrong, "; ".join(wrong)
