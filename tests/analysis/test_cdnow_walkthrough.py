"""The CDNOW walk-through of docs/analysis.md, run as written: raw master file -> import ->
model with holdout -> scores CSV, each figure checked against the model fitted straight from the
raw file (the path that reproduces the published parameters on the sample)."""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shopkeeper.analysis.clv import CLVModel, cdnow_calibration_end, fit_clv, parse_duration, read_cdnow, summarise
from shopkeeper.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MASTER = REPO / "tests" / "data" / "CDNOW_master.txt.gz"


def walkthrough_lines() -> list[str]:
    text = (REPO / "docs" / "analysis.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- walkthrough -->\s*```\n(.*?)```\s*<!-- /walkthrough -->", text, re.S)
    assert block, "docs/analysis.md lost its walk-through block"
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cdnow_walkthrough_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / MASTER.name).symlink_to(MASTER)
    lines = walkthrough_lines()
    commands = [line for line in lines if line.startswith("shopkeeper ")]
    assert len(commands) == 4, "raw file to scores in three commands, then the chart"
    assert [shlex.split(c)[1:3] for c in commands[1:]] == [["models", "fit"], ["report", "scores"], ["models", "chart"]]
    outputs = []
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            monkeypatch.setenv(name, value.replace("$PWD", str(tmp_path)))
            continue
        r = CliRunner().invoke(main, shlex.split(line)[1:], catch_exceptions=False)
        assert r.exit_code == 0, (line, r.output)
        outputs.append(r.output)
    imported, fitted, scored, charted = outputs
    assert "69659 rows read from 1 file(s): 69659 applied, 0 duplicates, 0 rejected; 23570 customers created" \
        in imported
    assert "255 orders repeat an earlier identical row" in imported
    assert "holdout: 39 weeks after the calibration end, 23570 customers" in fitted
    assert "validation chart written to holdout.png" in charted
    assert (tmp_path / "holdout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "23570 customers written to scores.csv" in scored

    # the same model straight from the raw file: parameters and every customer's scores agree
    rows = read_cdnow(str(MASTER))
    end = cdnow_calibration_end()
    summary = summarise([r for r in rows if r[1] <= end], end)
    direct = fit_clv(summary)
    m = re.search(r"BG/NBD  r=(\S+) alpha=(\S+) a=(\S+) b=(\S+)", fitted)
    assert m is not None
    got = [float(v) for v in m.groups()]
    want = [direct.bgnbd.r, direct.bgnbd.alpha, direct.bgnbd.a, direct.bgnbd.b]
    assert [f"{v:.4g}" for v in got] == [f"{v:.4g}" for v in want]
    model = CLVModel(direct.bgnbd, direct.gg, horizon=52, clv_horizon=parse_duration("12m"), discount=0.01,
                     discount_per="month", discount_step="month")
    s = model.score(summary.frequency, summary.recency, summary.T, summary.monetary)
    with open(tmp_path / "scores.csv", newline="") as fh:
        table = {r["crm_id"]: r for r in csv.DictReader(fh)}
    assert len(table) == 23570
    ours = np.array([[float(table[cid][k]) for k in ("expected_purchases", "p_alive", "clv")] for cid in summary.ids])
    assert np.allclose(ours[:, 0], s["expected_purchases"], rtol=1e-4)
    assert np.allclose(ours[:, 1], s["p_alive"], rtol=1e-4)
    assert np.allclose(ours[:, 2], s["clv"], rtol=1e-4)
    # RFM scores are quintiles: each holds a fifth of the buyers (give or take customers identical in
    # all three measures, which no ranking can part)
    for col in ("rfm_r", "rfm_f", "rfm_m"):
        counts = np.bincount([int(r[col]) for r in table.values()], minlength=6)[1:]
        assert np.abs(counts - 23570 / 5).max() <= 15, (col, counts)
