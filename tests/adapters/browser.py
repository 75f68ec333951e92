"""Headless Chromium for the adapter tests: Debian's chromium + chromedriver, never a download.

``scripts/install-test-deps.sh`` installs them (the README's test command runs it). A
missing browser **fails** the tests that need it rather than skipping them: a green run
must mean the browser tests ran.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("SHOPKEEPER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SHOPKEEPER_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,960", "--hide-scrollbars")


def make_driver(width: int = 1440, height: int = 960) -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: run `sh scripts/install-test-deps.sh` "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    opts = Options()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--window-size={width},{height}")
    profile = tempfile.mkdtemp(prefix="sk-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    driver._sk_profile = profile  # type: ignore[attr-defined]
    return driver


@pytest.fixture
def chrome() -> Iterator[Callable[..., Any]]:
    """A factory of headless Chromium sessions (fresh profile each); all quit after the test."""
    import shutil

    drivers: list[Any] = []

    def factory(**kw: Any) -> Any:
        d = make_driver(**kw)
        drivers.append(d)
        return d

    yield factory
    for d in drivers:
        try:
            d.quit()
        finally:
            shutil.rmtree(d._sk_profile, ignore_errors=True)


def wait_for(driver: Any, predicate: Callable[[Any], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.02).until(predicate)
    except TimeoutException:
        logs = ""
        try:
            logs = "\n".join(str(e) for e in driver.get_log("browser"))
        except Exception:  # noqa: BLE001 - diagnostics only
            pass
        pytest.fail(f"timed out after {timeout} s waiting for {what}; url={driver.current_url}\n{logs}")
