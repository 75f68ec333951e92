"""scipy, imported on first use: ``special`` and ``optimize`` stand in for the modules.

Why: importing ``scipy.special`` and ``scipy.optimize`` costs ~1–2 s of CPU on this machine, and
the analysis plugin (loaded by every ``shopkeeper`` command, the hub and every test subprocess)
imports the model code. Only a fit or a re-score needs scipy; everything else should not pay.

When scipy is imported here, numpy's ``f2py`` and ``testing`` submodules are first put in place
as lazy modules (:func:`_defer_numpy_extras`): scipy's ``_lib.array_api_compat.numpy`` copies every
name of ``dir(numpy)`` (``clone_module``), and numpy imports a submodule the first time its name is
read, so scipy's import loaded numpy's Fortran wrapper generator (with ``charset_normalizer``) and
its test helpers, which no fit calls: ~0.1 s of a ``models fit``'s CPU (docs/benchmarks.md).

And scipy's import rewrites the docstrings of ~350 of its functions as it decorates them (the array
API support table, batching and deprecation notes: ``scipy._lib._docscrape.FunctionDoc`` parses
each docstring and prints it again), ~0.1 s of a fit's CPU for help text no fit reads. While this
module imports scipy, the docstrings are left as written (:func:`_docstrings_as_written`): scipy's
functions compute the same, only ``help()`` of them lacks those notes in this process.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
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


class _DocAsWritten:
    """Stands in for scipy's ``FunctionDoc`` while scipy is imported here: the sections its
    decorators read are empty, what they add goes nowhere, and printed it is the docstring as
    written after the signature line they strip (see the module notes)."""

    def __init__(self, func: Any, *_args: Any, **_kwargs: Any) -> None:
        self._doc = getattr(func, "__doc__", None) or ""

    def __getitem__(self, section: str) -> list[Any]:
        return []

    def __setitem__(self, section: str, value: Any) -> None:
        pass

    def __str__(self) -> str:
        return "\n" + self._doc


@contextlib.contextmanager
def _docstrings_as_written() -> Iterator[None]:
    """Around scipy's import: its decorators get :class:`_DocAsWritten` for ``FunctionDoc``
    (which they import from ``scipy._lib._docscrape`` when first imported), and every module
    holds the real class again afterwards. Nothing on a scipy without that module, nor while
    another thread runs (a hub's): that thread could import more of scipy meanwhile, and its
    decorators must not get the stand-in."""
    if threading.active_count() > 1:
        yield
        return
    try:
        from scipy._lib import _docscrape
    except ImportError:
        yield
        return
    real = getattr(_docscrape, "FunctionDoc", None)
    if real is None:
        yield
        return
    _docscrape.FunctionDoc = _DocAsWritten
    try:
        yield
    finally:
        _docscrape.FunctionDoc = real
        for name, module in list(sys.modules.items()):
            if name.startswith("scipy") and getattr(module, "FunctionDoc", None) is _DocAsWritten:
                module.FunctionDoc = real


def _import_scipy(name: str) -> Any:
    """``importlib.import_module(name)`` with the docstrings left as written; should a scipy
    decorator need more of ``FunctionDoc`` than :class:`_DocAsWritten` gives (another scipy
    version), the import is done again the ordinary way."""
    try:
        with _docstrings_as_written():
            return importlib.import_module(name)
    except Exception:
        return importlib.import_module(name)


class _OnFirstUse:
    """A module's stand-in: the first attribute read imports it, and each name is kept."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        with collector.importing():  # scipy.optimize's import: ~0.5 s, long-lived objects only
            if self._name.startswith("scipy.") and self._name not in sys.modules:
                _defer_numpy_extras()
                module = _import_scipy(self._name)
            else:
                module = importlib.import_module(self._name)
        value = getattr(module, attr)
        setattr(self, attr, value)  # later reads skip __getattr__
        return value


special: Any = _OnFirstUse("scipy.special")
optimize: Any = _OnFirstUse("scipy.optimize")
