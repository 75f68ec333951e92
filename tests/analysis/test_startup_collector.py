"""The ``shopkeeper`` program's collector while it starts (``shopkeeper.startup_gc``, was ``.collector``): paused while
the command is found, what the start-up imported frozen, collections on again for the command;
scipy's import inside a command done paused. An in-process caller's collector is left as found
(issue 15: the collections during the imports were ~0.1–0.3 s of each CDNOW command)."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from shopkeeper import startup_gc as collector
from shopkeeper.analysis import _scipy

#: run as from a shell (``main()``, no args) or in-process (args given); at exit: the collector's state
WRAPPER = ("import atexit, gc, sys\n"
           "state = lambda: print('collector', gc.isenabled(), gc.get_freeze_count() > 1000, file=sys.stderr)\n"
           "atexit.register(state)\n"
           "from shopkeeper.cli import main\n"
           "mode = sys.argv.pop(1)\n"
           "main() if mode == 'shell' else main(sys.argv[1:], standalone_mode=False)\n")


@pytest.mark.e2e
def test_the_program_freezes_its_start_up_and_collects_again_for_the_command() -> None:
    argv = ["info", "--help"]  # the group's callback runs before the command reads --help
    done = subprocess.run([sys.executable, "-c", WRAPPER, "shell", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "collector True True" in done.stderr, done.stderr
    done = subprocess.run([sys.executable, "-c", WRAPPER, "args", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "collector True False" in done.stderr, done.stderr  # in-process: nothing frozen


@pytest.fixture
def fresh_collector():  # type: ignore[no-untyped-def]
    """The module's and the collector's state restored after the test."""
    was, program = gc.isenabled(), collector._program
    gc.unfreeze()
    yield
    collector._program = program
    gc.unfreeze()
    gc.enable() if was else gc.disable()


def test_in_process_the_collector_is_left_as_found(fresh_collector) -> None:  # type: ignore[no-untyped-def]
    collector._program = False
    gc.enable()
    collector.resume_after_startup()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with collector.importing():
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()  # a caller that had turned it off keeps it off
    with collector.importing():
        pass
    assert not gc.isenabled()


def test_the_program_pauses_then_freezes_what_it_imported(fresh_collector) -> None:  # type: ignore[no-untyped-def]
    gc.enable()
    collector.pause_for_startup()
    assert not gc.isenabled()
    made = [[i] for i in range(1000)]  # tracked containers, as an import makes
    collector.resume_after_startup()
    assert gc.isenabled() and gc.get_freeze_count() >= len(made)
    frozen = gc.get_freeze_count()
    with collector.importing():
        assert not gc.isenabled()
        more = [[i] for i in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(more)


def test_scipy_is_imported_with_the_collector_paused(fresh_collector, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = []

    def import_module(name: str):  # type: ignore[no-untyped-def]
        seen.append((name, gc.isenabled()))
        return sys

    monkeypatch.setattr(_scipy.importlib, "import_module", import_module)
    gc.enable()
    assert _scipy._OnFirstUse("scipy.whatever").version_info is sys.version_info
    assert seen == [("scipy.whatever", False)] and gc.isenabled()


def test_the_old_module_path_is_the_renamed_module() -> None:
    """``shopkeeper.collector`` was renamed ``shopkeeper.startup_gc`` (beside ``shopkeeper.hub.collector``):
    the old path still imports, as the very same module."""
    import importlib

    import shopkeeper.startup_gc

    assert importlib.import_module("shopkeeper.collector") is shopkeeper.startup_gc
    from shopkeeper import collector as old

    assert old is shopkeeper.startup_gc and old.pause_for_startup is shopkeeper.startup_gc.pause_for_startup


SCIPY_PROBE = ("import sys\n"
               "from shopkeeper.analysis._scipy import optimize, special\n"
               "special.gammaln, optimize.minimize\n"
               "ran = [m for m in ('numpy.f2py.f2py2e', 'numpy.testing._private.utils') if m in sys.modules]\n"
               "import numpy, numpy.testing\n"
               "numpy.testing.assert_allclose(special.gammaln(4.0), 1.791759469228055)\n"
               "from numpy.f2py import run_main\n"
               "print('before use:', *ran)\n"
               "print('after use:', callable(run_main), 'numpy.testing._private.utils' in sys.modules)\n")


@pytest.mark.e2e
def test_scipy_imports_without_running_numpys_f2py_and_testing() -> None:
    """scipy's import reads every name of ``dir(numpy)``; numpy's ``f2py`` and ``testing`` are
    registered lazily first, so their code does not run until used — and then works as before.
    A fresh interpreter: this one has loaded them through other tests."""
    done = subprocess.run([sys.executable, "-c", SCIPY_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["before use:", "after use: True True"], done.stdout


DOCS_PROBE = ("import sys\n"
              "from shopkeeper.analysis._scipy import optimize, special\n"
              "special.gammaln, optimize.minimize\n"
              "from scipy._lib import _array_api, _docscrape, _util, deprecation\n"
              "real = _docscrape.FunctionDoc\n"
              "print('as written:', 'Array API Standard Support' not in special.logsumexp.__doc__)\n"
              "mods = (_array_api, _util, deprecation)\n"
              "print('real again:', real.__name__, all(m.FunctionDoc is real for m in mods))\n"
              "print('parses:', [p.name for p in real(special.logsumexp)['Parameters']][:2])\n"
              "print('same value:', special.gammaln(4.0) == 1.791759469228055)\n")


@pytest.mark.e2e
def test_scipys_import_leaves_its_docstrings_as_written_and_scipy_as_it_was() -> None:
    """scipy's decorators parse and reprint ~350 docstrings as scipy is imported; imported for a fit,
    the docstrings are left as written — and afterwards scipy's ``FunctionDoc`` is the real one
    everywhere, so whatever imports more of scipy later documents as usual. A fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", DOCS_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-4:] == ["as written: True", "real again: FunctionDoc True",
                                             "parses: ['a', 'axis']", "same value: True"], done.stdout


def test_a_scipy_import_the_stand_in_breaks_is_done_again_as_usual(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Should another scipy's decorators need more of ``FunctionDoc`` than the stand-in gives, the
    import is done again the ordinary way instead of failing the fit."""
    import contextlib
    import json

    from shopkeeper.analysis import _scipy

    @contextlib.contextmanager
    def breaking():  # type: ignore[no-untyped-def]
        yield
        raise TypeError("'_DocAsWritten' object does not support item assignment")

    monkeypatch.setattr(_scipy, "_docstrings_as_written", breaking)
    assert _scipy._import_scipy("json") is json


def test_scipys_docstrings_are_left_alone_while_another_thread_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In a process with other threads (a hub), another thread could import more of scipy while the
    fit does: the stand-in is not put in place there."""
    import threading

    from scipy._lib import _docscrape

    from shopkeeper.analysis import _scipy

    real = _docscrape.FunctionDoc
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    with _scipy._docstrings_as_written():
        assert _docscrape.FunctionDoc is real
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    with _scipy._docstrings_as_written():
        assert _docscrape.FunctionDoc is _scipy._DocAsWritten
    assert _docscrape.FunctionDoc is real
