"""The browser tests' Chromium: Debian's, driven through its chromedriver by selenium, headless.
Without both installed the tests here are skipped, unless HELIX_REQUIRE_BROWSER is set (as CI
sets it), when the run stops instead."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium import webdriver

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "chromium and chromedriver are not installed"

if not (CHROMIUM and CHROMEDRIVER) and os.environ.get("HELIX_REQUIRE_BROWSER"):
    raise RuntimeError(f"HELIX_REQUIRE_BROWSER is set but {MISSING}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.skip(reason=MISSING))


def chrome(
    width: int = 1280, height: int = 900, phone: bool = False, downloads: Path | None = None
) -> webdriver.Chrome:
    """A headless Chromium with a window of this size; with `phone`, a phone's screen emulated
    (a window cannot be made that narrow); saving downloads into `downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--window-size={width},{height}",
    )  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    if downloads is not None:
        prefs = {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        }
        options.add_experimental_option("prefs", prefs)
    if phone:
        metrics = {"width": width, "height": height, "pixelRatio": 2.0}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def browser(downloads: Path) -> Iterator[webdriver.Chrome]:
    driver = chrome(downloads=downloads)
    try:
        yield driver
    finally:
        driver.quit()


async def in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks: its calls run in a thread while the event loop goes on."""
    return await asyncio.to_thread(call, *args)
