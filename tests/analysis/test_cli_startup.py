"""Commands that fit no model start without the numerical stack: ``shopkeeper import`` and
``report scores`` pay for numpy, scipy and matplotlib only if they use them (issue 15: the
CDNOW walk-through's three commands each pay their own start-up). A fresh interpreter, since
this one has them all loaded by other tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROBE = ("import sys\n"
         "from shopkeeper.cli import main\n"
         "main(['import', '--help'], standalone_mode=False)\n"
         "print('loaded:', *(m for m in ('numpy', 'scipy', 'matplotlib') if m in sys.modules))\n")


def test_the_import_command_starts_without_numpy_scipy_or_matplotlib() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout.splitlines()[-1]


#: What no offline walk-through command needs: the hub's transport, the channel adapters, the
#: importer, the rule engine's durable_rules, and pyarrow/matplotlib unless --parquet/--chart.
HUB_AND_HEAVY = ("grpc", "uvicorn", "starlette", "durable_rules", "asyncio", "pyarrow", "matplotlib",
                 "shopkeeper.adapters.base", "shopkeeper.client", "shopkeeper.importer", "shopkeeper.hub.server")


def _loaded_after(argv: list[str], watch: tuple[str, ...] = HUB_AND_HEAVY) -> list[str]:
    """The modules of :data:`HUB_AND_HEAVY` the command loads beyond what the installed
    third-party plugins load themselves: those (the example adapters CI installs import
    ``shopkeeper.adapters.base``, hence grpc) are the plugin's start-up, not the command's, and
    are loaded first so that they do not count."""
    probe = ("import sys\n"
             "from shopkeeper.plugins import ENTRY_POINT_GROUP, entry_points\n"
             "for ep in entry_points(group=ENTRY_POINT_GROUP):\n"
             "    ep.load()\n"
             f"before = {{m for m in {watch!r} if m in sys.modules}}\n"
             "from shopkeeper.cli import main\n"
             f"main({argv!r}, standalone_mode=False)\n"
             f"print('loaded:', *(m for m in {watch!r} if m in sys.modules and m not in before))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()[-1].split()[1:]


@pytest.mark.parametrize("argv", [
    ["models", "fit", "--store", "memory://", "--as-of", "1997-09-30"],
    ["report", "scores", "--store", "memory://", "--csv", "{tmp}/scores.csv", "--id", "crm_id"],
], ids=["models-fit", "report-scores-csv"])
def test_walkthrough_commands_start_without_the_hub_or_charts(argv: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each of the walk-through's offline commands, run for real on a store, imports none of the
    hub's code nor pyarrow/matplotlib (it loaded them all: ~1.2 s of CPU per command)."""
    assert _loaded_after([a.replace("{tmp}", str(tmp_path)) for a in argv]) == []


def test_models_fit_refreshes_its_score_segments_without_the_offers_or_the_processor(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``models fit`` re-evaluates the segments that read scores (the repository's rules: ``high_value``);
    it built the whole analysis state for that, which imported the processor's modules (offers,
    propensity, the outbox) and loaded the offers catalogue (docs/benchmarks.md §90)."""
    monkeypatch.setenv("SHOPKEEPER_RULES_DIR", str(Path(__file__).resolve().parents[2] / "rules"))
    watch = ("shopkeeper.analysis.processor", "shopkeeper.analysis.offers", "shopkeeper.analysis.propensity")
    assert _loaded_after(["models", "fit", "--store", "memory://", "--as-of", "1997-09-30"], watch) == []


def test_an_adapter_plugin_importing_the_adapter_base_loads_no_grpc() -> None:
    """The example adapters (and any third-party one) import ``shopkeeper.adapters.base``, which
    every command loading plugins then imports: its re-export of ``RemoteHub`` brought grpc and the
    SDK into ``models fit`` and ``report scores`` (§53: their start-up 0.90 / 0.81 s against
    ``import``'s 0.56). ``RemoteHub`` is still importable from it."""
    probe = ("import sys\n"
             "import shopkeeper.adapters.base as base\n"
             "print('loaded:', *(m for m in ('grpc', 'shopkeeper.client', 'shopkeeper.adapters.remote') "
             "if m in sys.modules))\n"
             "from shopkeeper.adapters.base import RemoteHub\n"
             "print(RemoteHub.__module__, 'grpc' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == ["loaded:", "shopkeeper.adapters.remote True"], done.stdout


def test_opening_an_evolved_store_offline_loads_no_rules_loader_campaign_runner_or_numpy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every offline command opens its store with the built-ins' evolve steps; asking the rules and
    campaigns plugins for their steps imported the rules package whole (YAML loader, checker,
    runtime) and the campaign runner (the planner, numpy through the analysis models), ~0.3–0.5 s of
    CPU per command, though a store already evolved runs none of those steps."""
    uri = f"file://{tmp_path}/Data.fs"
    opening = f"from shopkeeper.cli_common import open_store_or_exit\nopen_store_or_exit({uri!r}).close()\n"
    subprocess.run([sys.executable, "-c", opening], capture_output=True, text=True, timeout=120, check=True)
    heavy = ("numpy", "yaml", "shopkeeper.rules.loader", "shopkeeper.rules.runtime", "shopkeeper.campaigns.runs")
    probe = ("import sys\n"
             "from shopkeeper.plugins import ENTRY_POINT_GROUP, entry_points\n"
             "for ep in entry_points(group=ENTRY_POINT_GROUP):\n"
             "    ep.load()\n"
             f"before = {{m for m in {heavy!r} if m in sys.modules}}\n"
             f"{opening}"
             f"print('loaded:', *(m for m in {heavy!r} if m in sys.modules and m not in before))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout


def test_phases_are_printed_at_exit_only_when_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``SHOPKEEPER_PHASES`` makes a command print where its time went (bench_cdnow reads it):
    our first line, the CLI's import, the command found, the command's own phases, the exit —
    in order, on one monotonic clock and the process's CPU clock; unset, nothing."""
    import os

    argv = [sys.executable, "-c", "from shopkeeper.cli import main; main()", "report", "scores", "--store", f"file://{tmp_path}/Data.fs",
            "--csv", str(tmp_path / "scores.csv")]
    env = {**os.environ, "SHOPKEEPER_PHASES": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True)
    marks = [line.split() for line in done.stderr.splitlines() if line.startswith("phase ")]
    names = [" ".join(m[1:-2]) for m in marks]
    assert names == ["start", "cli", "commands", "open store", "identities", "rows read and written", "close store",
                     "exit"], done.stderr
    for clock in (-2, -1):
        values = [float(m[clock]) for m in marks]
        assert values == sorted(values) and values[0] > 0
    env.pop("SHOPKEEPER_PHASES")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True)
    assert "phase " not in done.stderr


def test_the_program_ends_a_finished_report_without_teardown_and_loses_no_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run as from a shell (``main()``, no args), a successful ``report scores`` ends the process
    without Python's shutdown (an atexit hook does not run) with its output flushed through a
    pipe; a failing command, and the same command called in-process with args, exit as before."""
    wrapper = ("import atexit, sys\n"
               "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"
               "from shopkeeper.cli import main\n"
               "mode = sys.argv.pop(1)\n"
               "main() if mode == 'shell' else main(sys.argv[1:], standalone_mode=False)\n")
    store = f"file://{tmp_path}/Data.fs"
    ok = ["report", "scores", "--store", store, "--csv", str(tmp_path / "scores.csv")]
    done = subprocess.run([sys.executable, "-c", wrapper, "shell", *ok], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"0 customers written to {tmp_path / 'scores.csv'}\n")
    assert (tmp_path / "scores.csv").read_text().startswith('"id",')
    assert "teardown ran" not in done.stderr
    done = subprocess.run([sys.executable, "-c", wrapper, "args", *ok], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "teardown ran" in done.stderr, done.stderr
    bad = ["report", "scores", "--store", store]  # no --csv: a usage error
    done = subprocess.run([sys.executable, "-c", wrapper, "shell", *bad], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "teardown ran" in done.stderr, done.stderr


def test_opening_a_store_offline_loads_neither_the_engine_nor_the_analysis_processor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The engine's evolve steps (``shopkeeper.engine.steps``) ran ``shopkeeper.engine``'s
    ``__init__``, whose ``Engine`` brought the writer, Decide's recording, the offer catalogue and the
    contact policy; the analysis plugin imported its processor's modules (offers, segments) at module
    level. An offline command opening its store needs none of them (~0.05 s of CPU each, issue 15);
    ``Engine`` and the plugin's old names are still importable from where they were."""
    uri = f"file://{tmp_path}/Data.fs"
    heavy = ("shopkeeper.engine.engine", "shopkeeper.engine.writer", "shopkeeper.analysis.offers",
             "shopkeeper.analysis.processor")
    probe = ("import sys\n"
             "from shopkeeper.plugins import ENTRY_POINT_GROUP, entry_points\n"
             "for ep in entry_points(group=ENTRY_POINT_GROUP):\n"
             "    ep.load()\n"
             f"before = {{m for m in {heavy!r} if m in sys.modules}}\n"
             "from shopkeeper.cli_common import open_store_or_exit\n"
             f"open_store_or_exit({uri!r}).close()\n"
             f"print('loaded:', *(m for m in {heavy!r} if m in sys.modules and m not in before))\n"
             "from shopkeeper.engine import Engine\n"
             "from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState, state_for\n"
             "print(Engine.__module__, AnalysisProcessor.__module__, AnalysisState.__module__, state_for.__module__)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == [
        "loaded:", "shopkeeper.engine.engine shopkeeper.analysis.processor shopkeeper.analysis.processor "
        "shopkeeper.analysis.processor"], done.stdout
