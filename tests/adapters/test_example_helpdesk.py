"""The example channel adapter (examples/shopkeeper-helpdesk) installed by its entry point and
passing the conformance suite with its delivery checks, in both modes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shopkeeper-helpdesk"


def _installed() -> bool:
    """The example is installed (editable, by the README's test command) from this checkout.

    Installing it here, at collection, would change the environment under every other test
    and slow every run; a stale non-editable copy would test old code. Either way the test
    below says what to run instead.
    """
    try:
        import shopkeeper_helpdesk
    except ImportError:
        return False
    return Path(shopkeeper_helpdesk.__file__).resolve().is_relative_to(EXAMPLE)


if _installed():
    sys.path.insert(0, str(EXAMPLE / "tests"))
    from test_helpdesk_conformance import Helpdesk, TestHelpdeskConformance, helpdesk  # noqa: E402, F401

    sys.path.remove(str(EXAMPLE / "tests"))
    __all__ = ["TestHelpdeskConformance", "helpdesk", "Helpdesk"]
else:
    def test_the_example_is_installed_from_this_checkout() -> None:
        pytest.fail(f"the example adapter is not installed from {EXAMPLE}: run "
                    f"`pip install -e examples/shopkeeper-helpdesk` (the README's test command does)", pytrace=False)
