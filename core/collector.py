"""Renamed :mod:`shopkeeper.startup_gc` (the program's collector while it starts), so that it is not
confused with :mod:`shopkeeper.hub.collector` (a serving hub's collector tuning). This old path is
the same module object: ``from shopkeeper import collector`` keeps working, state included."""

import sys

from . import startup_gc

sys.modules[__name__] = startup_gc
