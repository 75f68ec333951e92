"""Fixtures for the rules tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    return d
