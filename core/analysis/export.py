"""Export to Parquet (pyarrow) in bounded memory, and reports over it with DuckDB.

:func:`export_parquet` walks the customers in key order in one read view (one snapshot; the
connection cache emptied after every batch, so memory stays bounded), and streams row groups to

* ``customers.parquet`` — one row per active customer: hard facts, segments (list), the
  analysis scores as columns, e-mail consent, the ``Decide`` group (control/treatment) and,
  for a control-group customer, when they were first decided for (``control_since``);
* ``interactions.parquet`` — one row per interaction: customer, time, type, channel, touch
  point, amount (orders), offer (offer outcomes), campaign (e-mail);
* ``outcomes.parquet`` and ``segment_sizes.parquet`` — the learned propensities and the
  segment size history.

Reports (:func:`report`) are SQL over those files; ``chart=`` writes a PNG with matplotlib (Agg).
"""

from __future__ import annotations

import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import offerlog, scoretable
from ..customer import STATUS_ACTIVE
from ..store import Store
from .offers import DEFAULT_POLICY, FIRST_CONTROL_DECISION, in_control_group
from .peek import Peeked, field_rows

SCORE_COLUMNS = {
    "clv.value": "clv_value", "clv.expected_purchases": "clv_expected_purchases", "clv.p_alive": "clv_p_alive",
    "churn.risk": "churn_risk", "rfm.r": "rfm_r", "rfm.f": "rfm_f", "rfm.m": "rfm_m", "rfm.score": "rfm_score",
    "propensity.email_click": "p_email_click",
}
TS = pa.timestamp("us", tz="UTC")
CUSTOMER_SCHEMA = pa.schema([
    ("id", pa.string()), ("created_at", TS), ("orders", pa.int64()), ("total_spend", pa.float64()),
    ("interactions", pa.int64()), ("first_seen", TS), ("last_seen", TS), ("last_order_at", TS),
    ("last_channel", pa.string()), ("segments", pa.list_(pa.string())), ("email_consent", pa.bool_()),
    ("nba_group", pa.string()), ("control_since", TS),
    *[(col, pa.float64()) for col in SCORE_COLUMNS.values()],
])
INTERACTION_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("ts", TS), ("type", pa.string()), ("channel", pa.string()),
    ("touchpoint", pa.string()), ("amount", pa.float64()), ("offer", pa.string()), ("campaign", pa.string()),
])


def export_parquet(store: Store, out: str | Path, batch: int = 10_000, interactions: bool = True,
                   control_percent: float | None = None, control_salt: str | None = None,
                   progress: Any = None, peek: bool = True) -> dict[str, Any]:
    """Write the Parquet files into directory ``out``; returns counts and timings.

    The whole export reads **one snapshot** (one read view: what the hub commits meanwhile is not
    in it, so ``customers.parquet``, ``interactions.parquet`` and the small tables agree with each
    other), walking the customers in key order; the view's object cache is emptied after every
    ``batch`` customers so memory stays flat, and ``progress(customers, seconds)`` is called then.

    A customer whose interactions are all in its own record (not spilled) and whose Decide records are
    folded is read from a peek at its record (``peek``, the default: :mod:`shopkeeper.analysis.peek`,
    its bytes unpickled as plain values, no ``Customer`` built or cached); the others are loaded. The
    same rows either way (``tests/analysis/test_peek.py``)."""
    from ..customer import Customer
    from .peek import peek as peek_record
    from .plugin import AnalysisState

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pol = AnalysisState().catalogue.policy if control_percent is None else DEFAULT_POLICY
    pct = float(pol["control_percent"] if control_percent is None else control_percent)
    salt = str(control_salt or pol["control_salt"])
    t0 = time.perf_counter()
    n_c = n_i = 0
    cw = pq.ParquetWriter(out / "customers.parquet", CUSTOMER_SCHEMA, compression="zstd")
    iw = (pq.ParquetWriter(out / "interactions.parquet", INTERACTION_SCHEMA, compression="zstd")
          if interactions else None)
    score_names = tuple(SCORE_COLUMNS)
    customer_names = CUSTOMER_SCHEMA.names
    # one tuple per customer and per interaction (its stored fields, no ``Interaction`` built),
    # transposed once per batch (zip, in C) into the columns pyarrow takes
    rows: list[tuple] = []
    owners: list[str] = []
    its: list[Any] = []

    def flush() -> None:
        nonlocal n_c, n_i
        if rows:
            n_c += len(rows)
            cw.write_table(pa.table(dict(zip(customer_names, zip(*rows, strict=True), strict=True)),
                                    schema=CUSTOMER_SCHEMA))
        if iw is not None and its:
            # a column at a time (``map(itemgetter)``, in C), not ``zip(*its)``: zip over 100,000 tuples at
            # once cost ~7x as much (~25 us per customer of 10 interactions, under load; docs/benchmarks.md §93)
            ts, types, channels, touchpoints, datas = (list(map(itemgetter(i), its)) for i in range(1, 6))
            n_i += len(its)
            iw.write_table(pa.table({
                "customer_id": owners, "ts": ts, "type": types, "channel": channels, "touchpoint": touchpoints,
                "amount": [d.get("amount") if t == "order" else None for t, d in zip(types, datas, strict=True)],
                "offer": [d.get("offer") for d in datas], "campaign": [d.get("campaign") for d in datas],
            }, schema=INTERACTION_SCHEMA))
        rows.clear()
        owners.clear()
        its.clear()
        if progress is not None:
            progress(n_c, time.perf_counter() - t0)

    try:
        with store.read() as f:
            tables = scoretable.tables_in(f.root)  # read once, not from the root per customer
            logs = f.root.get(offerlog.ROOT)  # likewise: Decide's offer records not folded in yet, by customer
            conn = f.conn
            seen = 0
            for cid, c in f.customers.items():
                seen += 1
                log = logs.get(cid) if logs is not None else None
                folded = log is None or not log.entries
                if peek and folded and c._p_changed is None:  # a ghost: read its record without loading it
                    x = peek_record(conn, c._p_oid, Customer)
                    if x is not None and "_tree" not in x.__dict__ and "_recent" in x.__dict__:
                        c = x  # no spilled history: every interaction is in the record peeked at
                if c.status == STATUS_ACTIVE:
                    h = c.hard if folded else offerlog.hard_facts(c)[0]
                    since = c.soft.get(FIRST_CONTROL_DECISION)
                    scores = c.scores.as_dict(tables)
                    rows.append((
                        cid, c.created_at, h.get("orders", 0), h.get("total_spend", 0.0), h.get("interactions", 0),
                        h.get("first_seen"), h.get("last_seen"), h.get("last_order_at"), h.get("last_channel"),
                        sorted(c.segments), c.may_contact("email"),
                        "control" if in_control_group(cid, pct, salt) else "treatment",
                        since.value if since is not None else None,
                        *[s.value if (s := scores.get(name)) is not None else None for name in score_names]))
                    if iw is not None:
                        got = c.history.field_rows(folded) if c.__class__ is not Peeked else field_rows(c)
                        its.extend(got)
                        owners.extend([cid] * len(got))
                if seen >= batch:
                    f.conn.cacheMinimize()
                    flush()
                    seen = 0
            flush()
            _export_small_tables(f, out)
    finally:
        cw.close()
        if iw is not None:
            iw.close()
    return {"customers": n_c, "interactions": n_i, "seconds": round(time.perf_counter() - t0, 3), "out": str(out)}


def _export_small_tables(f: Any, out: Path) -> None:
    """The models, outcomes and segment sizes, from the export's read view ``f`` (its snapshot)."""
    import json

    from .propensity import table
    from .state import folder

    models = folder(f, "models")
    current = {k: v for k, v in (models.items() if models is not None else []) if "@" not in k}
    (out / "models.json").write_text(json.dumps(current, default=str, indent=1), encoding="utf-8")
    rows = table(folder(f, "outcomes"))
    hist = folder(f, "segment_history")
    sizes = [{"day": d, "segment": s, "size": n} for (d, s), n in hist.items()] if hist is not None else []
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
        ("offer", pa.string()), ("segment", pa.string()), ("shown", pa.int64()), ("accepted", pa.int64()),
        ("declined", pa.int64()), ("p_accept", pa.float64()), ("alpha", pa.float64()), ("beta", pa.float64())])),
        out / "outcomes.parquet")
    pq.write_table(pa.Table.from_pylist(sizes, schema=pa.schema([
        ("day", pa.string()), ("segment", pa.string()), ("size", pa.int64())])), out / "segment_sizes.parquet")


# -- reports -----------------------------------------------------------------------------

REPORTS: dict[str, str] = {
    "segments": """
        SELECT seg AS segment, count(*) AS customers,
               round(avg(total_spend), 2) AS avg_spend, round(avg(clv_value), 2) AS avg_clv
        FROM (SELECT unnest(segments) AS seg, total_spend, clv_value FROM '{d}/customers.parquet')
        GROUP BY seg ORDER BY customers DESC""",
    "offers": """
        SELECT offer, segment, shown, accepted, declined, round(p_accept, 4) AS p_accept
        FROM '{d}/outcomes.parquet' ORDER BY offer, segment""",
    "clv": """
        SELECT count(clv_value) AS scored, round(avg(clv_value), 2) AS mean,
               round(quantile_cont(clv_value, 0.1), 2) AS p10, round(quantile_cont(clv_value, 0.5), 2) AS p50,
               round(quantile_cont(clv_value, 0.9), 2) AS p90, round(max(clv_value), 2) AS max,
               round(avg(clv_p_alive), 4) AS mean_p_alive
        FROM '{d}/customers.parquet'""",
    "channels": """
        SELECT channel, type, count(*) AS interactions, count(DISTINCT customer_id) AS customers
        FROM '{d}/interactions.parquet' GROUP BY channel, type ORDER BY channel, interactions DESC""",
}


def report(data: str | Path, name: str, chart: str | Path | None = None, since_us: int = 0,
           window_days: float = 30.0) -> tuple[list[str], list]:
    """Run report ``name`` over an export directory; returns (columns, rows); draws ``chart`` if given."""
    import duckdb

    if name not in REPORTS and name != "uplift":
        raise KeyError(f"unknown report {name!r} (known: {', '.join([*REPORTS, 'uplift'])})")
    d = str(Path(data)).replace("'", "''")
    since = f"make_timestamptz({since_us}::BIGINT)" if since_us else "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
    con = duckdb.connect()
    try:
        if name == "uplift":
            from .uplift import uplift

            cols, rows = uplift(con, d, since, window_days)
        else:
            cur = con.execute(REPORTS[name].format(d=d, since=since))
            cols = [c[0] for c in cur.description]
            rows = cur.fetchall()
        if chart is not None:
            _chart(con, d, name, cols, rows, Path(chart), window_days)
    finally:
        con.close()
    return cols, rows


def _chart(con: Any, d: str, name: str, cols: list[str], rows: list, path: Path, window_days: float = 30.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if name == "uplift":
        from .uplift import chart as uplift_chart

        uplift_chart(rows, path, window_days)
        return
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    if name == "clv":
        import numpy as np

        vals = np.asarray([r[0] for r in con.execute(f"SELECT clv_value FROM '{d}/customers.parquet' "
                                                      "WHERE clv_value IS NOT NULL").fetchall()], float)
        hidden = 0
        if len(vals):
            hi = float(np.percentile(vals, 99)) or 1.0
            hidden = int((vals > hi).sum())
            ax.hist(vals[vals <= hi], bins=40, range=(min(0.0, float(vals.min())), hi), color="#3b7dd8",
                    edgecolor="white")
        ax.set_xlabel(f"predicted CLV {_clv_label(d)}"
                      + (f" — {hidden:,} customers above {hi:,.0f} not shown" if hidden else ""))
        ax.set_ylabel("customers")
        ax.set_title(f"Customer lifetime value distribution (BG/NBD + Gamma-Gamma), {len(vals):,} customers")
    elif name == "channels":
        import collections

        by: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for ch, ty, n, _c in rows:
            by[ch][ty] = n
        types = sorted({ty for v in by.values() for ty in v})
        chans = sorted(by)
        bottom = [0] * len(chans)
        for ty in types:
            vals = [by[ch].get(ty, 0) for ch in chans]
            ax.bar(chans, vals, bottom=bottom, label=ty)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("interactions")
        ax.set_title("Channel mix")
        ax.legend(fontsize=8, ncol=2)
    elif name == "offers":
        labels = [f"{r[0]} / {r[1]}  (shown {r[2]:,}, accepted {r[3]:,})" for r in rows]
        ax.barh(labels, [float(r[5] or 0) for r in rows], color="#3b7dd8")
        ax.invert_yaxis()
        ax.set_xlabel("learned P(accept) (Beta posterior mean)")
        ax.set_title("Learned P(accept) by offer / segment, with the numbers it is learned from")
    else:
        ax.barh([f"{r[0]}  (avg CLV {r[3]})" if r[3] is not None else str(r[0]) for r in rows],
                [float(r[1] or 0) for r in rows], color="#3b7dd8")
        ax.invert_yaxis()
        ax.set_xlabel("customers")
        ax.set_title("Segment sizes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _clv_label(d: str) -> str:
    """What the CLV scores of the export mean, from the model that wrote them: "over 12 months,
    discounted 0.01 per month in monthly steps"."""
    import json

    from .clv import describe_weeks

    try:
        models = json.loads((Path(d) / "models.json").read_text(encoding="utf-8"))
        clv = models["clv"]
    except (OSError, ValueError, KeyError, TypeError):
        return "(model settings unknown: export again)"
    text = f"over {describe_weeks(float(clv.get('clv_horizon') or clv['horizon']))}"
    if clv.get("discount"):
        text += (f", discounted {clv['discount']:g} per {clv.get('discount_per', 'week')} "
                 f"in {clv.get('discount_step', 'week')}ly steps")
    return text


def render(cols: list[str], rows: list) -> str:
    """A plain text table."""
    cells = [[str(c) for c in cols]] + [["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
                                         for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
