"""The example third-party adapter (examples/shopkeeper-vendorcrm) installed by its entry point,
passing the conformance suite, and run out of the hub with `shopkeeper adapter run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHOPKEEPER = str(Path(sys.executable).parent / "shopkeeper")  # the installed console script
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shopkeeper-vendorcrm"


def _installed() -> bool:
    """The example is installed (editable, by the README's test command) from this checkout.

    Installing it here, at collection, would change the environment under every other test
    and slow every run; a stale non-editable copy would test old code. Either way the test
    below says what to run instead.
    """
    try:
        import shopkeeper_vendorcrm
    except ImportError:
        return False
    return Path(shopkeeper_vendorcrm.__file__).resolve().is_relative_to(EXAMPLE)


if _installed():
    sys.path.insert(0, str(EXAMPLE / "tests"))
    from test_conformance import CSV, TestVendorCrmConformance, drop, test_contacts_become_customers_with_consent  # noqa: E402, F401

    sys.path.remove(str(EXAMPLE / "tests"))
    __all__ = ["TestVendorCrmConformance", "test_contacts_become_customers_with_consent"]


def _need_the_example() -> None:
    if not _installed():
        pytest.fail(f"the example adapter is not installed from {EXAMPLE}: run "
                    f"`pip install -e examples/shopkeeper-vendorcrm` (the README's test command does)", pytrace=False)


if not _installed():
    def test_the_example_is_installed_from_this_checkout() -> None:
        _need_the_example()


def test_found_through_its_entry_point() -> None:
    _need_the_example()
    from importlib.metadata import entry_points

    assert "vendorcrm" in {e.name for e in entry_points(group="shopkeeper")}
    out = subprocess.run([SHOPKEEPER, "plugins"], capture_output=True, text=True)
    assert any(line.startswith("vendorcrm") and "0.1.0" in line for line in out.stdout.splitlines()), out.stdout


def test_runs_as_its_own_process(shopkeeper_hub, tmp_path) -> None:
    """`shopkeeper adapter run vendorcrm --hub … --api-key …`: the same class, over gRPC."""
    _need_the_example()
    cfg = tmp_path / "vendorcrm.yaml"
    cfg.write_text(f"inbox: {tmp_path / 'inbox'}\npoll_seconds: 0.05\n")
    proc = subprocess.Popen([SHOPKEEPER, "adapter", "run", "vendorcrm",
                             "--hub", shopkeeper_hub.address, "--config", str(cfg)],
                            env={**os.environ, "SHOPKEEPER_API_KEY": shopkeeper_hub.api_key},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        shopkeeper_hub.wait_for(lambda: (tmp_path / "inbox").exists() or proc.poll() is not None, timeout=30)
        drop(tmp_path / "inbox" / "x.csv", CSV)
        shopkeeper_hub.wait_for(lambda: shopkeeper_hub.customer(("crm_id", "C-2")) or proc.poll() is not None,
                                timeout=30, what="the out-of-process adapter's contact")
        assert proc.poll() is None, proc.stderr.read().decode()
        assert shopkeeper_hub.customer(("email", "ann@example.com"))["traits"]["first_name"] == "Ann"
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0, proc.stderr.read().decode()
