"""Commands that fit no model start without the numerical stack: ``shopkeeper import`` and
``report scores`` pay for numpy, scipy and matplotlib only if they use them (issue 15: the
CDNOW walk-through's three commands each pay their own start-up). A fresh interpreter, since
this one has them all loaded by other tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

PROBE = ("import sys\n"
         "from shopkeeper.cli import main\n"
         "main(['import', '--help'], standalone_mode=False)\n"
         "print('loaded:', *(m for m in ('numpy', 'scipy', 'matplotlib') if m in sys.modules))\n")


def test_the_import_command_starts_without_numpy_scipy_or_matplotlib() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout.splitlines()[-1]
