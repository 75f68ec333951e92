"""Start-up never silently runs without rules: invalid central rules refuse to start (with file:line),
unless --allow-invalid-rules, which serves the valid files and reports the rules component NOT_SERVING."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopkeeper._proto.v1 import admin_pb2, admin_pb2_grpc, common_pb2, interactions_pb2, interactions_pb2_grpc
from shopkeeper.hub.config import ConfigError, HubConfig
from shopkeeper.hub.server import Hub
from shopkeeper.plugins import StartupRefused
from shopkeeper.rules import tags
from shopkeeper.store import Store

from .helpers import write_rules

pytestmark = pytest.mark.e2e

GOOD = "rules:\n  - name: good\n    when: {event: page_view}\n    then: [{tag: seen}]\n"
# names an action no installed plugin provides: used to switch off *all* rules with one ERROR line
BAD = "rules:\n  - name: points\n    when: {event: order}\n    then:\n      - give_points: 10\n"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hub(rules_dir: Path, **kw: object) -> Hub:
    cfg = HubConfig(listen=f"127.0.0.1:{_port()}", store="memory://", rules_dir=str(rules_dir))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Hub(cfg, store=Store.open("memory://"), load_entrypoints=False)


def _health(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service)).status


def test_invalid_rules_refuse_to_start_with_file_and_line(rules_dir: Path) -> None:
    write_rules(rules_dir, "good.yaml", GOOD)
    bad = write_rules(rules_dir, "bad.yaml", BAD)
    hub = _hub(rules_dir)
    with pytest.raises(StartupRefused) as exc:
        hub.start()
    assert f"{bad}:5:9: unknown action 'give_points'" in str(exc.value)
    assert "--allow-invalid-rules" in str(exc.value)
    hub.store.close()


def test_allow_invalid_rules_serves_the_valid_files_and_health_says_why(rules_dir: Path) -> None:
    write_rules(rules_dir, "good.yaml", GOOD)
    bad = write_rules(rules_dir, "bad.yaml", BAD)
    hub = _hub(rules_dir, allow_invalid_rules=True)
    hub.start()
    try:
        assert _health(hub.port, "rules") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(hub.port, "") == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as ch:
            plugins = admin_pb2_grpc.AdminStub(ch).ListPlugins(admin_pb2.ListPluginsRequest()).plugins
            why = {p.name: p.error for p in plugins}["component:rules"]
            assert str(bad) in why and "give_points" in why
            # the valid file is in force: one bad file did not switch off every rule
            ev = common_pb2.Event(type="page_view", idempotency_key="p1",
                                  identities=[common_pb2.Identity(namespace="email", value="v@example.com")])
            ev.data.update({"url": "/"})
            got = interactions_pb2_grpc.InteractionsStub(ch).RecordInteraction(
                interactions_pb2.RecordInteractionRequest(event=ev))
            with hub.store.read() as f:
                assert tags(f.customer(got.customer_id)) == ["seen"]
            # fixed and reloaded: the component serves again
            bad.write_text(GOOD.replace("good", "also_good").replace("seen", "seen2"))
            admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest())
        assert _health(hub.port, "rules") == health_pb2.HealthCheckResponse.SERVING
    finally:
        hub.stop(grace=0.5)
        hub.store.close()


def test_allow_invalid_rules_config_key() -> None:
    assert HubConfig.from_mapping({"allow_invalid_rules": True}).allow_invalid_rules is True
    assert HubConfig().allow_invalid_rules is False
    with pytest.raises(ConfigError, match="allow_invalid_rules: must be true or false"):
        HubConfig.from_mapping({"allow_invalid_rules": "yes please"})


def test_shopkeeper_serve_refuses_and_prints_the_errors(tmp_path: Path, rules_dir: Path) -> None:
    write_rules(rules_dir, "good.yaml", GOOD)
    bad = write_rules(rules_dir, "bad.yaml", BAD)
    proc = subprocess.run(
        [sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve", "--store",
         f"file://{tmp_path}/Data.fs", "--listen", f"127.0.0.1:{_port()}", "--rules", str(rules_dir),
         "--log-format", "text"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"{bad}:5:9: unknown action 'give_points'" in proc.stderr
    assert "--allow-invalid-rules" in proc.stderr
