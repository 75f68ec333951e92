"""Parts of ``bench_scaleout.py`` that are not the run itself (split off to keep it under the
module size cap): the delaying TCP relay of the K-hub simulation, PostgreSQL's own counters
before and after a run, the hubs' probe counts, and the K-hub model with its curve check
(docs/scaleout.md, "The K-hub model"; docs/capacity.md §2)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

from harness import free_port


class DelayRelay:
    """A TCP relay to ``target`` that holds every chunk ``delay`` seconds in each direction."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay, self.port = target, delay, free_port()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            q: asyncio.Queue = asyncio.Queue()

            async def delayed() -> None:
                while (item := await q.get()) is not None:
                    due, data = item
                    await asyncio.sleep(max(0.0, due - self.loop.time()))
                    writer.write(data)
                    await writer.drain()
                writer.close()

            task = asyncio.ensure_future(delayed())
            while data := await reader.read(65536):
                q.put_nowait((self.loop.time() + self.delay, data))
            q.put_nowait(None)
            await task

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            tr, tw = await asyncio.open_connection(*self.target)
            await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)

        async def main() -> None:
            await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()


#: pg_stat_database counters read before and after a run: what PostgreSQL did per event
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_returned")


def pg_figures(pg: Any, dbname: str) -> dict[str, int]:
    """The database's size (RelStorage's tables and indexes), the cluster's WAL position, and the
    database's transaction and row counters (``pg_stat_database``: no extension needed, unlike
    ``pg_stat_statements``, which a private cluster would have to preload)."""
    size = int(pg.psql("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'", dbname) or 0)
    wal = int(pg.psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    pg.psql("SELECT pg_stat_force_next_flush()", dbname)  # this backend's own counts (PostgreSQL >= 15)
    got = pg.psql(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = '{dbname}'", dbname)
    return {"db_bytes": size, "wal": wal, **dict(zip(PG_COUNTERS, (int(x) for x in got.split("|")), strict=True))}


def pg_deltas(before: dict[str, int], after: dict[str, int], events: int, writer_commits: int | None = None,
              ) -> dict[str, float]:
    """PostgreSQL's work per event from two :func:`pg_figures`: transactions committed and rolled
    back per 1,000 events (a writer's commit, a sequencing op and a lease renewal commit; every
    poll of a read connection, RelStorage's load transactions, rolls back) and rows written per
    event — and, given the hubs' writer commits (``--probe``), rows written per writer commit."""
    d = {k: after[k] - before[k] for k in PG_COUNTERS}
    written = d["tup_inserted"] + d["tup_updated"] + d["tup_deleted"]
    n = max(1, events)
    out = {"pg_commits_per_1k_events": round(1000 * d["xact_commit"] / n, 2),
           "pg_rollbacks_per_1k_events": round(1000 * d["xact_rollback"] / n, 2),
           "pg_rows_written_per_event": round(written / n, 2),
           "pg_rows_read_per_event": round(d["tup_returned"] / n, 1)}
    if writer_commits:
        out["pg_rows_written_per_writer_commit"] = round(written / writer_commits)
    return out


def probe_figures(row: dict[str, Any], probe_dir: str, label: str) -> None:
    """``--probe``: add the hubs' counts (hubprobe.py, written as each hub exits) to ``row``:
    events the writers applied per event sent (1.0: nothing re-applied after a conflict), object
    reloads per 1,000 events, and the conflicts by class of the object."""
    counts: list[dict[str, Any]] = []
    for f in sorted(Path(probe_dir).glob(f"{label}-hub*.loads.json")):
        counts.append(json.loads(f.read_text()))
    if not counts:
        return
    sent = max(1, row["events"])
    by_class: collections.Counter[str] = collections.Counter()
    reloads: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for c in counts:
        threads.update({k: v for k, v in c.get("thread_cpu", {}).items() if k != "(process)"})
        by_class.update(c["conflicts"])
        reloads.update(c["reloads"])
    row.update({"applied_per_event": round(sum(c["attempted_events"] for c in counts) / sent, 2),
                "largest_group": max(c["largest_attempt"] for c in counts),
                "writer_commits": sum(c["attempts"] for c in counts) - sum(by_class.values()),
                "reapplied_per_conflict": round((sum(c["attempted_events"] for c in counts) - sent)
                                                / max(1, sum(by_class.values()))),
                # CPU by thread over every hub, per event sent: which part grows with the hubs
                "thread_cpu_us_per_event": {k: round(v * 1e6 / sent, 1) for k, v in sorted(
                    threads.items(), key=lambda kv: -kv[1]) if v * 1e6 / sent >= 0.5},
                "reloads_per_1k_events": round(1000 * sum(reloads.values()) / sent, 1),
                "reloads_by_class": dict(reloads.most_common(5)),
                "conflicts_by_class": dict(by_class)})


def model(rows: list[dict[str, Any]], pg_cores: int) -> None:
    """The K-hub model: each hub on a core of its own (docs/scaleout.md, "The K-hub model")."""
    pg_rows = [r for r in rows if r["config"].startswith("postgresql")]
    one = next((r for r in pg_rows if r["hubs"] == 1), None)
    for r in pg_rows:
        k, cpu = r["hubs"], r["hub_cpu_us_per_event"]
        hubs_limit = k * 1e6 / cpu if cpu else float("inf")
        pg_limit = (r.get("pg_events_per_core_s") or float("inf")) * pg_cores
        r["efficiency_vs_1"] = round(one["hub_cpu_us_per_event"] / cpu, 3) if one and cpu else None
        r["model_events_per_s"] = round(min(hubs_limit, pg_limit))
        print(f"model K={k}: {r['model_events_per_s']} events/s on {k} one-core machines "
              f"(hubs {hubs_limit:.0f}/s, PostgreSQL with {pg_cores} cores {pg_limit:.0f}/s); "
              f"efficiency {r['efficiency_vs_1']}, conflict retries {r['conflict_retries_pct']}%", flush=True)
    check_curve(pg_rows)


def check_curve(pg_rows: list[dict[str, Any]]) -> None:
    """The capacity model's curve (docs/capacity.md §2, docs/scaleout.md "The K-hub model")
    fitted at K = 2 and checked at every larger K. Each hub's transactions meet the commits of
    the K − 1 others, so at a fixed rate per hub the conflicts per event grow linearly in K − 1,
    and so does the extra work per event: hub CPU per event(K) = cpu(1) × (1 + a·(K − 1)), i.e.
    E(K) = 1 / (1 + a·(K − 1)) with a = 1/E(2) − 1. Measured above the line by more than half
    again falsifies the model (conflicts superlinear in K: a structure every hub writes)."""
    by_k = {r["hubs"]: r for r in pg_rows}
    one, two = by_k.get(1), by_k.get(2)
    if not one or not two or not two.get("efficiency_vs_1"):
        return
    a = 1 / two["efficiency_vs_1"] - 1
    c2 = two["conflict_retries_pct"]
    for k, r in sorted(by_k.items()):
        if k <= 2:
            continue
        e_pred = 1 / (1 + a * (k - 1))
        c_pred = c2 * (k - 1)
        r["efficiency_predicted"] = round(e_pred, 3)
        r["conflict_retries_pct_predicted"] = round(c_pred, 3)
        ok = r["efficiency_vs_1"] >= e_pred / 1.5 and r["conflict_retries_pct"] <= max(1.5 * c_pred, 0.01)
        r["curve_holds"] = ok
        print(f"curve K={k}: efficiency {r['efficiency_vs_1']} vs {e_pred:.3f} predicted from K=2; conflict "
              f"retries {r['conflict_retries_pct']}% vs {c_pred:.3f}% — {'holds' if ok else 'FALSIFIED'} "
              f"(within 1.5x)", flush=True)


def tree_nodes(obj: Any, path: str, out: dict[str, str], depth: int = 0) -> None:
    """Every node of the BTrees under ``obj`` (a root folder): oid (hex) -> "path node@depth" for an
    interior node, "path bucket" for a leaf; folders whose values are trees (the audience index, the
    segments' members) are walked into, customer records and other leaves are not."""
    from BTrees.Interfaces import IBTree, ITreeSet
    from persistent import Persistent

    if not isinstance(obj, Persistent) or depth > 6:
        return
    if type(obj).__name__ == "LaneTree":  # one tree per customer-id lane (shopkeeper.lanetree)
        if obj._p_oid is not None:
            out.setdefault(obj._p_oid.hex(), f"{path} (lane tree)")
        tree_nodes(obj.shards, f"{path} lane", out)
        if obj.legacy is not None:
            tree_nodes(obj.legacy, f"{path} legacy", out)
        return
    oid = getattr(obj, "_p_oid", None)
    is_tree = IBTree.providedBy(obj) or ITreeSet.providedBy(obj)
    if oid is not None and oid.hex() in out:
        return
    if not is_tree:
        return
    if oid is not None:
        out[oid.hex()] = f"{path} node@{depth}"
    state = obj.__getstate__()
    if state is None:
        return
    children = state[0] if isinstance(state, tuple) and state and isinstance(state[0], tuple) else ()
    if len(state) == 1 and not (children and isinstance(children[0], Persistent)):
        children = ()  # one bucket, inline in the tree's own record
    for child in children[::2] if children and isinstance(children[0], Persistent) else ():
        if IBTree.providedBy(child) or ITreeSet.providedBy(child):
            tree_nodes(child, path, out, depth + 1)
        elif getattr(child, "_p_oid", None) is not None:
            out[child._p_oid.hex()] = f"{path} bucket"
    if depth == 0 and hasattr(obj, "items") and len(obj) < 2000:  # a folder of trees (segments, the index)
        with contextlib.suppress(Exception):
            for k, v in obj.items():
                if IBTree.providedBy(v) or ITreeSet.providedBy(v) or type(v).__name__ == "LaneTree":
                    tree_nodes(v, f"{path}[{k!r}]", out, 0)


def conflict_trees(uri: str, row: dict[str, Any], probe_dir: str, label: str) -> None:
    """``--probe``: name where each conflict of the run was — the tree (root folder path) and whether
    the object was a bucket or an interior node — for conflicts naming an object and for RelStorage's
    lock refusals on read-current rows (the oids it tried to lock: the refusal names none). Adds
    ``conflicts_where`` to ``row`` (counts by "hub: type: tree part") and writes every conflict,
    named, to ``DIR/LABEL.conflicts.json``."""
    from shopkeeper.store import Store, StoreOptions

    details: list[dict[str, Any]] = []
    for f in sorted(Path(probe_dir).glob(f"{label}-hub*.loads.json")):
        for d in json.loads(f.read_text()).get("conflict_details", []):
            details.append({**d, "hub": f.name.rsplit("-hub", 1)[1].split(".")[0]})
    if not details:
        row["conflicts_where"] = {}
        return
    store = Store.open(uri, StoreOptions(read_only=True))
    where: dict[str, str] = {}
    try:
        with store.read() as folders:
            for name in list(folders.root.keys()):
                tree_nodes(folders.root[name], name, where)
    finally:
        with contextlib.suppress(Exception):  # (a read-only RelStorage's pooled connections)
            store.close()
    counts: collections.Counter[str] = collections.Counter()
    for d in details:
        if d.get("oid"):
            d["where"] = where.get(d["oid"], d["class"] + " " + d["oid"])
        if d.get("read_current"):
            d["read_current_where"] = sorted({where.get(o, c) for o, c in
                                              zip(d["read_current"], d.get("read_current_classes", []), strict=False)})
        part = d.get("where") or "read-current " + ", ".join(d.get("read_current_where", ["?"]))
        counts[f"hub{d['hub']} {d['type']}: {part}"] += 1
    row["conflicts_where"] = dict(counts.most_common())
    (Path(probe_dir) / f"{label}.conflicts.json").write_text(json.dumps(details, indent=1))
