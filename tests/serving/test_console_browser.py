"""The console in a real browser: headless Chromium (Debian's, driven through ChromeDriver) against a real uvicorn
server routes a query and shows the ranking with its explanation, the traffic, the users and the catalog, whose
enable/disable buttons change what the server routes to. Screenshots must not be blank; with
GRAPHROUTE_SCREENSHOTS=<folder> they are also written there (the docs' pictures come from this test)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving.conftest import KEY, ThreadServer

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture()
def browser() -> Iterator[object]:
    if CHROMIUM is None or DRIVER is None:
        pytest.fail("chromium and chromedriver are needed: `make env` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver: object, name: str) -> np.ndarray:
    png = driver.get_screenshot_as_png()  # type: ignore[attr-defined]
    folder = os.environ.get("GRAPHROUTE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"console-{name}.png").write_bytes(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels.shape[0] > 500 and pixels.shape[1] > 1000
    assert pixels.std() > 20 and len(np.unique(pixels)) > 30  # text, tables and bars, not one flat colour


def test_console_routes_explains_and_manages(run_dir: Path, tmp_path: Path, browser: object) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    settings = ServeSettings(router_dir=run_dir, api_key=KEY, store_url=str(tmp_path / "store.sqlite"))
    with ThreadServer(create_app(settings)) as url:
        d = browser
        wait = WebDriverWait(d, 30, ignored_exceptions=(StaleElementReferenceException,))  # tables re-render
        d.get(f"{url}/console")  # type: ignore[attr-defined]
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "LLMs routable"))
        key = d.find_element(By.ID, "key")  # type: ignore[attr-defined]
        key.send_keys(KEY)
        d.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)  # type: ignore[attr-defined]
        user = d.find_element(By.ID, "user")  # type: ignore[attr-defined]
        user.send_keys("user001")
        d.find_element(By.ID, "route-btn").click()  # type: ignore[attr-defined]
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#ranking .rank-row")) > 0)
        expected = httpx.post(f"{url}/v1/route", json={"query": "Solve for x: 12x + 5 = 41.", "user_id": "user001"})
        assert d.find_element(By.ID, "chosen").text == expected.json()["llm"]  # type: ignore[attr-defined]
        rows = d.find_elements(By.CSS_SELECTOR, "#ranking .rank-row")  # type: ignore[attr-defined]
        assert len(rows) == 6 and rows[0].find_elements(By.CSS_SELECTOR, ".bar span")
        header = d.find_element(By.ID, "ranking").text  # type: ignore[attr-defined]
        assert "neighbours" in header and "affinity" in header
        assert len(d.find_elements(By.CSS_SELECTOR, "#neighbours .neighbour-row")) == 5  # type: ignore[attr-defined]
        assert_not_blank(shot(d, "route"))

        d.find_element(By.CSS_SELECTOR, "nav button[data-tab=traffic]").click()  # type: ignore[attr-defined]
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#traffic .traffic-row")) == 6)
        assert "100.0 %" in d.find_element(By.ID, "traffic").text  # type: ignore[attr-defined]  # two identical routes
        assert_not_blank(shot(d, "traffic"))

        d.find_element(By.CSS_SELECTOR, "nav button[data-tab=users]").click()  # type: ignore[attr-defined]
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#users .user-row")) >= 8)

        d.find_element(By.CSS_SELECTOR, "nav button[data-tab=catalog]").click()  # type: ignore[attr-defined]
        wait.until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#catalog .llm-row")) == 6)
        chosen = expected.json()["llm"]
        d.find_element(By.CSS_SELECTOR, f"button.toggle[data-llm='{chosen}']").click()  # type: ignore[attr-defined]
        wait.until(
            lambda drv: drv.find_element(By.CSS_SELECTOR, f"button.toggle[data-llm='{chosen}']").text == "enable"
        )
        after = httpx.post(f"{url}/v1/route", json={"query": "Solve for x: 12x + 5 = 41.", "user_id": "user001"})
        assert after.json()["llm"] != chosen  # the button disabled it on the server
        assert_not_blank(shot(d, "catalog"))
