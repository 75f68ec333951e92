"""The committed generated code must match what the .proto files generate."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "codegen.py"  # a checkout tool, not in the package
_spec = importlib.util.spec_from_file_location("codegen", _SCRIPT)
assert _spec is not None and _spec.loader is not None
codegen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codegen)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    out = tmp_path / "v1"
    codegen.generate(out)
    committed = codegen.OUT_DIR
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix != ".pyc")
    stale = [n for n in names if not filecmp.cmp(out / n, committed / n, shallow=False)]
    assert not stale, (f"core/_proto/v1 is out of date with protos/ for {stale}: "
                       "run `python scripts/codegen.py` and commit the result")


def test_protos_ship_inside_the_package() -> None:
    import importlib.resources

    files = importlib.resources.files("shopkeeper._proto.v1")
    assert (files / "interactions.proto").read_text().startswith("// Shopkeeper public API")


def test_generation_keeps_the_hand_written_parent_package(tmp_path: Path) -> None:
    """``core/_proto/__init__.py`` is ours (it documents ``values``, the shared conversion), not
    generated: regenerating must not replace it (it did: every run rewrote its docstring)."""
    pytest.importorskip("grpc_tools")
    parent = tmp_path / "_proto"
    parent.mkdir()
    (parent / "__init__.py").write_text('"""hand-written"""\n')
    codegen.generate(parent / "v1")
    assert (parent / "__init__.py").read_text() == '"""hand-written"""\n'
    assert (parent / "v1" / "__init__.py").read_text() == codegen._INIT
