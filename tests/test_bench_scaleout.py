"""bench_scaleout's ``--warm`` and ``--route customer`` (docs/benchmarks.md §34): the steady state
they stand for holds only if every customer of the run is created beforehand exactly once, under
keys the run does not reuse, and on the hub that will write the customer afterwards."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_scaleout.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_PATH.parent))
    spec = importlib.util.spec_from_file_location("shopkeeper_bench_scaleout", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _who(e):
    return str(sorted(e["identities"].items()))


def test_warm_up_creates_each_customer_of_the_run_once_under_new_keys(bench):
    from workload import iter_events

    run = list(iter_events(600, n_customers=200))
    warm = bench.warm_events(600, 200)
    assert sorted(_who(e) for e in warm) == sorted({_who(e) for e in run})
    assert not {e["idempotency_key"] for e in warm} & {e["idempotency_key"] for e in run}


def test_routed_warm_up_reaches_the_hub_that_writes_the_customer_later(bench):
    from shopkeeper._proto.v1 import interactions_pb2

    def hubs_of(per_hub):
        out = {}
        for hub, batches in enumerate(per_hub):
            for raw in batches:
                for ev in interactions_pb2.EventBatch.FromString(raw).events:
                    out.setdefault(str(sorted((i.namespace, i.value) for i in ev.identities)), set()).add(hub)
        return out

    run = hubs_of(bench.routed_batches(600, 200, 100, 3))
    warm = hubs_of(bench.routed_batches(0, 0, 100, 3, bench.warm_events(600, 200)))
    assert warm.keys() == run.keys()
    assert all(len(hubs) == 1 for hubs in run.values())
    assert all(warm[who] == run[who] for who in run)
    assert len({h for hubs in run.values() for h in hubs}) == 3


def test_hubprobe_compare_tells_more_calls_per_event_from_slower_calls(tmp_path, capsys):
    """``hubprobe.py compare``: per event, so two phases of different lengths compare; a function
    called twice as often per event shows it in its calls column."""
    import cProfile

    spec = importlib.util.spec_from_file_location("shopkeeper_hubprobe", _PATH.with_name("hubprobe.py"))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    def work() -> int:
        return sum(range(200))

    paths = []
    for calls in (100, 400):  # B: 400 calls for 200 events = 2 per event, A: 100 for 100 = 1
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            work()
        prof.disable()
        paths.append(str(tmp_path / f"{calls}.pstats"))
        prof.dump_stats(paths[-1])
    probe.compare(paths[0], 100, paths[1], 200)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.endswith(":work"))
    assert "1.000 ->    2.000" in line


def test_probe_figures_say_what_each_conflict_cost_and_where_the_hubs_cpu_went(tmp_path):
    """Two hubs' probe counts: writer commits are the group attempts less the conflicts, the events
    re-applied per conflict are the attempted events beyond those sent, and CPU per event is
    summed over the hubs thread by thread (docs/benchmarks.md §89)."""
    import json

    sys.path.insert(0, str(_PATH.parent))
    from scaleout_parts import pg_deltas, probe_figures

    for n, (attempts, attempted, conflicts, writer) in enumerate([(10, 6000, {"OOBucket": 1}, 3.0),
                                                                   (7, 5000, {"None": 1}, 2.0)]):
        (tmp_path / f"run-hub{n}.loads.json").write_text(json.dumps({
            "attempts": attempts, "attempted_events": attempted, "largest_attempt": 1000, "conflicts": conflicts,
            "reloads": {}, "thread_cpu": {"shopkeeper-writer": writer, "shopkeeper-feed": 0.1, "(process)": 9.9}}))
    row = {"events": 10_000}
    probe_figures(row, str(tmp_path), "run")
    assert row["writer_commits"] == 15 and row["reapplied_per_conflict"] == 500
    assert row["applied_per_event"] == 1.1
    assert row["thread_cpu_us_per_event"] == {"shopkeeper-writer": 500.0, "shopkeeper-feed": 20.0}
    before = {"xact_commit": 100, "xact_rollback": 50, "tup_inserted": 0, "tup_updated": 0, "tup_deleted": 0,
              "tup_returned": 0}
    after = {**before, "xact_commit": 130, "xact_rollback": 1050, "tup_inserted": 3000, "tup_updated": 6000,
             "tup_deleted": 1000, "tup_returned": 5000}
    got = pg_deltas(before, after, 10_000, writer_commits=15)
    assert got == {"pg_commits_per_1k_events": 3.0, "pg_rollbacks_per_1k_events": 100.0,
                   "pg_rows_written_per_event": 1.0, "pg_rows_read_per_event": 0.5,
                   "pg_rows_written_per_writer_commit": 667}


def test_conflict_trees_names_the_tree_and_node_of_each_conflict(tmp_path):
    """``--probe``'s conflicts named (docs/benchmarks.md §101): a conflict's oid, or the oids a lock
    refusal on read-current rows tried to lock, mapped to the root folder tree that holds them and
    to bucket or interior node — what said the two hubs' conflicts were the order trees' roots."""
    import json

    sys.path.insert(0, str(_PATH.parent))
    from scaleout_parts import conflict_trees

    from shopkeeper.customer import Customer, Interaction
    from shopkeeper.plugins import builtin_evolve_steps
    from shopkeeper.store import Store

    uri = str(tmp_path / "s.fs")
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            for i in range(400):  # orders: the order facts' lane "c00" splits into buckets under a node
                c = f.add_customer(Customer(f"c00{i:05d}", created_at=0))
                c.add_interaction(Interaction(1, 1, "order", "web", data={"amount": 1.0}))
        with s.read() as f:
            facts = f.root["audience"]["order_facts"].shards["c00"]
            node, bucket = facts._p_oid.hex(), facts._firstbucket._p_oid.hex()
            customers = f.root["customers"].shards["c00"]._p_oid.hex()  # a LaneTree since generation 17
    (tmp_path / "run-hub0.loads.json").write_text(json.dumps({"conflict_details": [
        {"class": "None", "oid": node, "type": "VoteReadConflictError"},
        {"class": "OOBTree", "oid": customers, "type": "ConflictError"}]}))
    (tmp_path / "run-hub1.loads.json").write_text(json.dumps({"conflict_details": [
        {"class": "None", "oid": None, "type": "UnableToLockRowsToReadCurrentError",
         "read_current": [bucket, node], "read_current_classes": ["?", "?"]}]}))
    row: dict = {}
    conflict_trees(uri, row, str(tmp_path), "run")
    assert row["conflicts_where"] == {
        "hub0 VoteReadConflictError: audience['order_facts'] lane['c00'] node@0": 1,
        "hub0 ConflictError: customers lane['c00'] node@0": 1,
        "hub1 UnableToLockRowsToReadCurrentError: read-current audience['order_facts'] lane['c00'] bucket, "
        "audience['order_facts'] lane['c00'] node@0": 1}
