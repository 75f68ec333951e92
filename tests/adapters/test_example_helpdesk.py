"""The example channel adapter (examples/shopkeeper-helpdesk) installed by its entry point and
passing the conformance suite with its delivery checks, in both modes."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shopkeeper-helpdesk"


def _ensure_installed() -> None:
    """pip-install the example (not editable: importable at once) unless the installed copy is current."""
    try:
        import shopkeeper_helpdesk

        if Path(shopkeeper_helpdesk.__file__).read_bytes() == (EXAMPLE / "shopkeeper_helpdesk" / "__init__.py"
                                                                ).read_bytes():
            return
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--force-reinstall", str(EXAMPLE)], check=True, capture_output=True)
    importlib.invalidate_caches()
    sys.modules.pop("shopkeeper_helpdesk", None)


_ensure_installed()
sys.path.insert(0, str(EXAMPLE / "tests"))
from test_helpdesk_conformance import Helpdesk, TestHelpdeskConformance, helpdesk  # noqa: E402

sys.path.remove(str(EXAMPLE / "tests"))

__all__ = ["TestHelpdeskConformance", "helpdesk", "Helpdesk"]
