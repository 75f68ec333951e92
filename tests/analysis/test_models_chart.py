"""``shopkeeper models chart``: the holdout validation chart drawn from the comparison the last
fit kept in the store, so the walk-through's fit (which the scores wait for) need not import
matplotlib (issue 15's 5 s budget)."""

from __future__ import annotations

import gzip
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from shopkeeper.cli import main

REPO = Path(__file__).resolve().parents[2]
MASTER = REPO / "tests" / "data" / "CDNOW_master.txt.gz"


def _import_line() -> list[str]:
    text = (REPO / "docs" / "analysis.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- walkthrough -->\s*```\n(.*?)```\s*<!-- /walkthrough -->", text, re.S)
    assert block
    line = next(ln for ln in block.group(1).splitlines() if ln.startswith("shopkeeper import "))
    return shlex.split(line)[1:]


@pytest.mark.slow
def test_models_chart_draws_the_last_fits_holdout(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOPKEEPER_STORE", f"file://{tmp_path}/d.fs")
    with gzip.open(MASTER, "rt") as fin, gzip.open(tmp_path / MASTER.name, "wt") as fout:
        fout.writelines(line for _, line in zip(range(1500), fin, strict=False))
    run = CliRunner().invoke
    r = run(main, _import_line(), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = run(main, ["models", "chart", "early.png"])
    assert r.exit_code != 0 and "no holdout comparison" in r.output, r.output
    r = run(main, ["models", "fit", "--as-of", "1997-09-30", "--holdout", "1998-06-30"], catch_exceptions=False)
    assert r.exit_code == 0 and "holdout: 39 weeks after the calibration end" in r.output, r.output
    assert not (tmp_path / "holdout.png").exists()
    r = run(main, ["models", "chart", "holdout.png"], catch_exceptions=False)
    assert r.exit_code == 0 and "validation chart written to holdout.png" in r.output, r.output
    png = (tmp_path / "holdout.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
