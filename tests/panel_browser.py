"""Headless Chromium for the panel tests: Debian's chromium and chromium-driver, given explicitly.

Selenium is handed ``/usr/bin/chromedriver`` and the browser binary, so it never asks
selenium-manager (or the network) for either. Without them the tests skip, except in CI
(``CI=true``), where a missing browser fails the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import pytest

from cadenza.engine.ui.server import PanelServer
from tests.helpers import playing, wait_for

CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 1500)


def chromium_driver():
    """A started headless Chromium WebDriver; skips (or fails in CI) when none is installed."""
    chromium = shutil.which("chromium")
    if chromium is None or not os.path.exists(CHROMEDRIVER):
        message = "chromium and chromium-driver are not installed (.ci/setup installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: selenium-manager stays offline
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def element(driver, css: str, timeout: float = 10.0):
    """The first element matching ``css`` once it is displayed (AssertionError after ``timeout``)."""
    from selenium.webdriver.common.by import By

    found = []

    def shown() -> bool:
        found[:] = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return bool(found)

    assert wait_for(shown, timeout), f"{css} never showed on the panel"
    return found[0]


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent")


@contextlib.contextmanager
def panel_open(driver, engine, backend, options=None):
    """Play ``engine`` on ``backend`` with a panel on a free port, opened in ``driver``; yields
    (layer, panel) once the panel shows "connected"."""
    with playing(engine, backend, options) as layer, PanelServer(layer, port=0) as panel:
        driver.get(panel.url)
        assert wait_for(lambda: text_of(driver, "connection") == "connected", 15), "the panel never connected"
        assert wait_for(lambda: text_of(driver, "patch-name") == engine.patch.name, 10)
        time.sleep(0.2)
        yield layer, panel
