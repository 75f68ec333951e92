"""scipy, imported on first use: ``special`` and ``optimize`` stand in for the modules.

Why: importing ``scipy.special`` and ``scipy.optimize`` costs ~1–2 s of CPU on this machine, and
the analysis plugin (loaded by every ``shopkeeper`` command, the hub and every test subprocess)
imports the model code. Only a fit or a re-score needs scipy; everything else should not pay.

When scipy is imported here, numpy's ``f2py`` and ``testing`` submodules are first put in place
as lazy modules (:func:`_defer_numpy_extras`): scipy's ``_lib.array_api_compat.numpy`` copies every
name of ``dir(numpy)`` (``clone_module``), and numpy imports a submodule the first time its name is
read, so scipy's import loaded numpy's Fortran wrapper generator (with ``charset_normalizer``) and
its test helpers, which no fit calls: ~0.1 s of a ``models fit``'s CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from .. import startup_gc as collector

#: numpy submodules that scipy's import reads by name but a fit never uses (see the docstring)
NUMPY_EXTRAS = ("numpy.f2py", "numpy.testing")


def _defer_numpy_extras() -> None:
    """Register each of :data:`NUMPY_EXTRAS` not yet imported as a lazy module
    (``importlib.util.LazyLoader``): the module object exists, as numpy's attribute and in
    ``sys.modules``, and its code runs the first time one of its attributes is read — so whoever
    uses ``numpy.testing`` later gets the real module, only loaded then."""
    import numpy

    for name in NUMPY_EXTRAS:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        loader = importlib.util.LazyLoader(spec.loader)
        spec.loader = loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loader.exec_module(module)
        setattr(numpy, name.rpartition(".")[2], module)


class _OnFirstUse:
    """A module's stand-in: the first attribute read imports it, and each name is kept."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        with collector.importing():  # scipy.optimize's import: ~0.5 s, long-lived objects only
            if self._name.startswith("scipy.") and self._name not in sys.modules:
                _defer_numpy_extras()
            module = importlib.import_module(self._name)
        value = getattr(module, attr)
        setattr(self, attr, value)  # later reads skip __getattr__
        return value


special: Any = _OnFirstUse("scipy.special")
optimize: Any = _OnFirstUse("scipy.optimize")
