"""The engine's own named evolve steps, contributed through ``shopkeeper_evolve_steps`` exactly as
a plugin contributes its own: this module is a built-in plugin (first in
``shopkeeper.plugins.BUILTIN_PLUGINS``), so the engine's root folders (the change feed's staging,
heads and positions; the leases) have one owner, one way in, and no registration at import time.

The step names are those recorded in every store since the engine first made these folders
(``meta['steps']``): renaming one would run it again.
"""

from __future__ import annotations

from typing import Any

from ..plugins import hookimpl


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """``feed_staging`` (and ``feed_heads``, for stores whose staging step ran before heads
    existed: the same idempotent function) and ``leases``."""
    from ..store import EvolveStep
    from .feed import create_staging
    from .leases import create_leases

    return [EvolveStep("feed_staging", create_staging), EvolveStep("feed_heads", create_staging),
            EvolveStep("leases", create_leases)]
