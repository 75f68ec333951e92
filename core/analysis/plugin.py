"""The built-in analysis plugin: registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_processors`` — the in-transaction processor that keeps scores, learned
  propensities and segment membership up to date as every event commits;
* ``shopkeeper_decide`` — next best action from the offer catalogue;
* ``shopkeeper_register_commands`` — ``models``, ``segments``, ``offers``, ``report``.
"""

from __future__ import annotations

from typing import Any

from ..plugins import hookimpl


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import register

    register(cli)
