"""The built-in campaigns plugin, registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_startup`` / ``shopkeeper_shutdown`` — the campaign runner: it drives runs left
  ``snapshot``/``running`` (a hub that crashed mid-run continues from the run's cursor) and
  starts scheduled runs of the campaign files in force; every write goes through the hub's
  one writer (``hub.writer.submit_op``);
* ``shopkeeper_register_commands`` — ``shopkeeper campaign …``.

The campaign files are ``<rules dir>/campaigns/*.yaml`` (the hub config's ``rules_dir``, else
``$SHOPKEEPER_RULES_DIR`` or ``./rules``), re-read when a file changes; a file with errors keeps
the campaigns in force (like rules) and logs the errors.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ..context import plugin_state
from ..plugins import hookimpl

log = logging.getLogger("shopkeeper.campaigns")

# per-hub state (shopkeeper.context.plugin_state): the campaign files and the runner
FILES = "shopkeeper.campaigns.files"
RUNNER = "shopkeeper.campaigns.runner"


def rules_dir(hub: Any) -> Path:
    from ..rules.runtime import RulesConfig

    d = getattr(getattr(hub, "config", None), "rules_dir", None)
    return Path(d) if d else RulesConfig().directory


class CampaignFiles:
    """The campaign files in force for a hub: re-read when their names or mtimes change."""

    def __init__(self, directory: Path, templates: dict[str, set[str]] | None = None) -> None:
        self.directory = directory
        #: channel -> template names the hub's adapters declare (``shopkeeper_message_templates``):
        #: a campaign naming another is warned about at start and on every reload, as rules are
        self.templates = templates
        self._stamp: Any = None
        self._lock = threading.Lock()
        self.current: dict[str, Any] = {}
        self.errors: list[str] = []

    def __call__(self) -> dict[str, Any]:
        from .model import campaign_files

        with self._lock:
            files = campaign_files(self.directory)
            stamp = tuple((str(p), p.stat().st_mtime_ns) for p in files if p.exists())
            if stamp != self._stamp:
                self._stamp = stamp
                cs = self.load()
                self.errors = [str(e) for e in cs.errors]
                if cs.errors:
                    log.error("campaign files have errors; the campaigns in force stay:\n%s", "\n".join(self.errors))
                else:
                    self.current = dict(cs.campaigns)
                if cs.warnings:
                    log.warning("campaign files have warnings:\n%s", "\n".join(map(str, cs.warnings)))
            return self.current


    def load(self) -> Any:
        """The campaign files checked now, templates included (no caching: ``CheckCampaigns``)."""
        from .model import load_campaigns

        return load_campaigns(self.directory, templates=self.templates)


def hub_templates(hub: Any) -> dict[str, set[str]] | None:
    """Channel -> template names the hub's configured adapters declare; None outside a hub."""
    from ..plugins import message_templates

    pm = getattr(hub, "pm", None)
    if pm is None:
        return None
    return message_templates(pm, getattr(getattr(hub, "config", None), "adapters", None) or {})


def files_for(hub: Any) -> CampaignFiles:
    return plugin_state(hub).setdefault(FILES, lambda: CampaignFiles(rules_dir(hub), hub_templates(hub)))


def runner_for(hub: Any) -> Any:
    return plugin_state(hub).get(RUNNER)


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """Campaign runs (``root['campaign_runs']``) and the audience index campaigns plan from: built
    once per store, then kept current on every write by its before-commit hook (``keep``)."""
    from .. import audience
    from ..store import EvolveStep
    from .steps import create_runs  # not .runs: it brings the planner and numpy into every command

    return [EvolveStep("audience-index", audience.build, keep=audience.install),
            EvolveStep("audience-split", audience.split),  # segments and order facts out of the cards
            EvolveStep("campaign-runs", create_runs)]


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    from .runs import Runner

    store = getattr(hub, "store", None)
    writer = getattr(hub, "writer", None)
    if store is None or writer is None or getattr(hub, "pm", None) is None:
        return  # not a hub process
    plugin_state(hub).set(RUNNER, Runner(store, writer.submit_op, campaigns=files_for(hub)).start())


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    runner = plugin_state(hub).pop(RUNNER)
    if runner is not None:
        runner.stop()


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import campaign

    if campaign.name not in cli.commands:
        cli.add_command(campaign)
