"""A rule timer whose firing was queued on a writer that stopped is not lost: the firing never
committed, so the timer is still in its index and fires after the restart (docs/operations.md,
"Stopping a hub"). The runner itself ends quietly on the stopping writer's refusal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shopkeeper.engine.writer import HubStopping, Writer
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.rules import TimerRunner, tags
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

from .helpers import apply, event, service_for_dir, write_rules
from .test_rules_runtime import CART


def test_a_timer_whose_firing_was_refused_at_stop_fires_after_the_restart(tmp_path: Path, rules_dir: Path) -> None:
    write_rules(rules_dir, "cart.yaml", CART)
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    svc = service_for_dir(rules_dir)
    past = time.time() - 60  # due long ago
    cid = apply(store, svc, event("checkout_started", {"cart_value": 7}, who="t@x.com", ts=past))[0].customer_id
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    gate = threading.Event()
    w.submit_op(lambda f, ch: gate.wait(30))  # the writer is busy: the firing queues behind
    runner = TimerRunner(store, svc, submit=w.submit_op)
    outcome: list[BaseException | int] = []

    def fire() -> None:
        try:
            outcome.append(runner.run_once())
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    t = threading.Thread(target=fire)
    t.start()
    wait_for(lambda: w.queue_depth == 1, what="the firing queued")
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], HubStopping)
    gate.set()
    stopper.join(30)
    store.close()

    store = Store.open(uri)  # the restart
    try:
        with store.read() as f:
            assert f.root["rule_timers"]  # still pending
            assert tags(f.customer(cid)) == []
        svc2 = service_for_dir(rules_dir)
        with store.transaction() as f:
            assert [x["customer_id"] for x in svc2.fire_due(f)] == [cid]
        with store.read() as f:
            assert tags(f.customer(cid)) == ["abandoned"]
    finally:
        store.close()


def test_the_runner_ends_quietly_when_the_writer_refuses(store: Store, rules_dir: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    write_rules(rules_dir, "cart.yaml", CART)
    svc = service_for_dir(rules_dir)
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    w.stop()  # what the runner's next tick meets while the hub stops
    runner = TimerRunner(store, svc, submit=w.submit_op, tick=0.01).start()
    try:
        wait_for(lambda: not runner._thread.is_alive(), what="the runner ended")
    finally:
        runner.stop()
    assert runner.errors == 0 and "rule timer runner" not in caplog.text
