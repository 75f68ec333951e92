"""Uplift of next best action: outcomes after each customer's first decision, treatment vs control.

A customer enters the comparison at their **first decision** — the first ``offer_shown`` (the
hub records one for every offer it makes), the soft fact ``nba.control_since`` for a
control-group customer (who is shown nothing; the hub sets it at their first decision), or, for
customers reached by a campaign, the first ``email_sent`` — and the outcome is what they did
in the ``window`` after it: converted (at least one order) and spend. Orders before that
moment are not counted: counting every order made both groups look alike (conversion 1.0
each) whatever the offers did.

Rows: ``all`` (every decided customer) and one per offer, where the treatment side is the
customers whose first decision was that offer and the control side is the whole control group
(who were not shown anything, so their "would-have-been" offer is not known; eligibility rules
may make an offer's customers differ from the control group beyond the offer itself). Each row
gives both sample sizes, both conversion rates, their difference with a 95% interval
(normal approximation, unpooled) and the same for spend per customer (Welch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .offers import CONTROL_OFFER

Z95 = 1.959963984540054

COLUMNS = ["scope", "treated", "control", "conversion_t", "conversion_c", "difference", "ci_low", "ci_high",
           "spend_t", "spend_c", "spend_difference", "spend_ci_low", "spend_ci_high"]

_PER_CUSTOMER = """
    WITH decided AS (
        SELECT customer_id, ts AS first_at,
               CASE WHEN type = 'offer_shown' THEN offer ELSE 'email:' || coalesce(campaign, '-') END AS what
        FROM '{d}/interactions.parquet' WHERE type IN ('offer_shown', 'email_sent')
        UNION ALL
        SELECT id, control_since, '{control}' FROM '{d}/customers.parquet' WHERE control_since IS NOT NULL),
    first AS (
        SELECT customer_id, min(first_at) AS first_at, arg_min(what, first_at) AS what FROM decided
        GROUP BY customer_id HAVING min(first_at) >= {since}),
    after AS (
        SELECT f.customer_id, count(i.ts) AS orders, coalesce(sum(i.amount), 0) AS spend
        FROM first f LEFT JOIN '{d}/interactions.parquet' i
          ON i.customer_id = f.customer_id AND i.type = 'order' AND i.ts > f.first_at
             AND i.ts <= f.first_at + to_microseconds({window_us}::BIGINT)
        GROUP BY f.customer_id)
    SELECT f.what,
           CASE WHEN f.what = '{control}' THEN 'control'
                WHEN f.what LIKE 'email:%' THEN coalesce(c.nba_group, 'treatment')
                ELSE 'treatment' END AS grp,
           a.orders, a.spend
    FROM first f JOIN after a USING (customer_id)
    LEFT JOIN '{d}/customers.parquet' c ON c.id = f.customer_id"""


def difference(t: np.ndarray, c: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``t`` minus mean of ``c`` with a 95% interval (unpooled standard error); NaN when
    a side has no one."""
    if len(t) == 0 or len(c) == 0:
        return math.nan, math.nan, math.nan
    diff = float(t.mean() - c.mean())
    var_t = float(t.var(ddof=1)) if len(t) > 1 else 0.0
    var_c = float(c.var(ddof=1)) if len(c) > 1 else 0.0
    se = math.sqrt(var_t / len(t) + var_c / len(c))
    return diff, diff - Z95 * se, diff + Z95 * se


def uplift(con: Any, d: str, since: str, window_days: float) -> tuple[list[str], list[tuple[Any, ...]]]:
    rows = con.execute(_PER_CUSTOMER.format(d=d, since=since, control=CONTROL_OFFER,
                                            window_us=int(window_days * 86_400_000_000))).fetchall()
    what = np.array([r[0] for r in rows], dtype=object)
    group = np.array([r[1] for r in rows], dtype=object)
    converted = np.array([1.0 if r[2] else 0.0 for r in rows])
    spend = np.array([float(r[3] or 0.0) for r in rows])
    control = group == "control"
    out: list[tuple[Any, ...]] = []
    scopes = [("all", group == "treatment")]
    scopes += [(str(o), (what == o) & (group == "treatment")) for o in sorted(set(what[group == "treatment"]))]
    for scope, treated in scopes:
        conv = difference(converted[treated], converted[control])
        money = difference(spend[treated], spend[control])
        out.append((scope, int(treated.sum()), int(control.sum()),
                    _r(converted[treated].mean() if treated.any() else math.nan, 4),
                    _r(converted[control].mean() if control.any() else math.nan, 4),
                    *(_r(v, 4) for v in conv),
                    _r(spend[treated].mean() if treated.any() else math.nan, 2),
                    _r(spend[control].mean() if control.any() else math.nan, 2),
                    *(_r(v, 2) for v in money)))
    return list(COLUMNS), out


def _r(v: float, digits: int) -> float | None:
    return None if v is None or v != v else round(float(v), digits)


def chart(rows: list[tuple[Any, ...]], path: str | Path, window_days: float) -> None:
    """The difference in conversion with its 95% interval, per scope, labelled with both sample sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r[5] is not None]
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.6 * len(shown) + 1.5)), dpi=110)
    for y, r in enumerate(shown):
        ax.errorbar([r[5]], [y], xerr=[[r[5] - r[6]], [r[7] - r[5]]], fmt="o", color="#3b7dd8", capsize=4)
        ax.annotate(f"{r[3]:.1%} vs {r[4]:.1%}", (r[5], y), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=8)
    ax.set_yticks(range(len(shown)), [f"{r[0]}  (n={r[1]:,} treated / {r[2]:,} control)" for r in shown])
    ax.axvline(0, color="grey", linestyle=":")
    ax.invert_yaxis()
    ax.set_xlabel(f"difference in conversion within {window_days:g} days of the first decision "
                  "(treatment − control, 95% interval)")
    ax.set_title("Uplift of next best action: treatment vs control")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
