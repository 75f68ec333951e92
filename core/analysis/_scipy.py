"""scipy, imported on first use: ``special`` and ``optimize`` stand in for the modules.

Why: importing ``scipy.special`` and ``scipy.optimize`` costs ~1–2 s of CPU on this machine, and
the analysis plugin (loaded by every ``shopkeeper`` command, the hub and every test subprocess)
imports the model code. Only a fit or a re-score needs scipy; everything else should not pay.
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import startup_gc as collector


class _OnFirstUse:
    """A module's stand-in: the first attribute read imports it, and each name is kept."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        with collector.importing():  # scipy.optimize's import: ~0.5 s, long-lived objects only
            module = importlib.import_module(self._name)
        value = getattr(module, attr)
        setattr(self, attr, value)  # later reads skip __getattr__
        return value


special: Any = _OnFirstUse("scipy.special")
optimize: Any = _OnFirstUse("scipy.optimize")
