"""The example third-party adapter (examples/shopkeeper-vendorcrm) installed by its entry point,
passing the conformance suite, and run out of the hub with `shopkeeper adapter run`."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

SHOPKEEPER = str(Path(sys.executable).parent / "shopkeeper")  # the installed console script
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shopkeeper-vendorcrm"


def _ensure_installed() -> None:
    """pip-install the example (not editable: importable at once) unless the installed copy is current."""
    try:
        import shopkeeper_vendorcrm

        if Path(shopkeeper_vendorcrm.__file__).read_bytes() == (EXAMPLE / "shopkeeper_vendorcrm" / "__init__.py"
                                                                 ).read_bytes():
            return
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--force-reinstall", str(EXAMPLE)], check=True, capture_output=True)
    importlib.invalidate_caches()
    sys.modules.pop("shopkeeper_vendorcrm", None)


_ensure_installed()
sys.path.insert(0, str(EXAMPLE / "tests"))
from test_conformance import CSV, TestVendorCrmConformance, drop, test_contacts_become_customers_with_consent  # noqa: E402

sys.path.remove(str(EXAMPLE / "tests"))

__all__ = ["TestVendorCrmConformance", "test_contacts_become_customers_with_consent"]


def test_found_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    assert "vendorcrm" in {e.name for e in entry_points(group="shopkeeper")}
    out = subprocess.run([SHOPKEEPER, "plugins"], capture_output=True, text=True)
    assert any(line.startswith("vendorcrm") and "0.1.0" in line for line in out.stdout.splitlines()), out.stdout


def test_runs_as_its_own_process(shopkeeper_hub, tmp_path) -> None:
    """`shopkeeper adapter run vendorcrm --hub … --api-key …`: the same class, over gRPC."""
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
