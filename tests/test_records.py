"""Persistent classes live in stable modules only (issue 19): a record's pickle names its class's
module, so a class defined beside logic breaks every stored record the day that logic is split or
renamed. The ``records`` modules hold them, with aliases for the paths older records name
(``OLD_PATHS``); the golden stores prove those load (``tests/test_golden_store.py``)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from ZODB.broken import Broken, find_global

from shopkeeper.records import STABLE_MODULES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"shopkeeper": ROOT / "core", "shopkeeper.adapters": ROOT / "adapters"}
#: library classes whose subclasses are persistent records
_LIBRARY_BASES = re.compile(
    r"^(Persistent|PersistentMapping|PersistentList|Length|[IOLQUF]{2}(BTree|TreeSet|Set|Bucket))$")


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript):
        return _base_name(node.value)
    return ""


def _persistent_classes() -> dict[str, str]:
    """``module.Class`` -> file of every class under ``core/`` and ``adapters/`` that subclasses a
    persistent library class, or one of ours that does (followed until nothing new is found)."""
    classes: list[tuple[str, str, list[str], str]] = []
    for pkg, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            if "_proto" in rel.parts or (pkg == "shopkeeper" and rel.parts[0] == "adapters"):
                continue
            module = ".".join([pkg, *(p for p in rel.parts if p != "__init__")])
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    classes.append((module, node.name, [_base_name(b) for b in node.bases],
                                    f"{path.relative_to(ROOT)}:{node.lineno}"))
    found: dict[str, str] = {}
    names: set[str] = set()
    while True:
        new = {f"{m}.{c}": where for m, c, bases, where in classes
               if f"{m}.{c}" not in found and any(_LIBRARY_BASES.match(b) or b in names for b in bases)}
        if not new:
            return found
        found.update(new)
        names |= {k.rpartition(".")[2] for k in new}


def test_persistent_classes_are_defined_in_stable_modules_only() -> None:
    found = _persistent_classes()
    assert {"shopkeeper.customer.Customer", "shopkeeper.records.MergeRecord",
            "shopkeeper.engine.records.Lease", "shopkeeper.campaigns.records.Run"} <= set(found)  # the walk sees them
    outside = sorted(f"{name} ({where})" for name, where in found.items()
                     if name.rpartition(".")[0] not in STABLE_MODULES)
    assert not outside, (
        f"persistent classes outside the stable modules {STABLE_MODULES}: {outside}. Define them in the "
        "package's records module (a pickle names the class's module: logic modules get split), and if "
        "records were already written under the old path, import the class there and list it in OLD_PATHS")


def test_every_old_pickle_path_loads_the_class_from_its_records_module() -> None:
    """ZODB resolves a pickled ``module.Name`` by importing it (``ZODB.broken.find_global``): each old
    path a ``records`` module declares gives its class, not a ``Broken`` stand-in; and the classes
    defined there name that module, so records written now name it."""
    for name in STABLE_MODULES:
        mod = importlib.import_module(name)
        for old, cls_name in getattr(mod, "OLD_PATHS", {}).items():
            cls = getattr(mod, cls_name)
            module, _, attr = old.rpartition(".")
            got = find_global(module, attr)
            assert got is cls, f"{old} loads {got!r}, not {name}.{cls_name}"
            assert not issubclass(got, Broken)
            assert cls.__module__ == name, f"{cls!r} pickles as {cls.__module__}, not {name}"
