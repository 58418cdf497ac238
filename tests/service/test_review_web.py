"""Review page: token checks over HTTP, and a label entered in headless Chromium lands in reviews.csv
and changes the next labels run.

The browser is Debian's chromium with its chromedriver, driven by selenium. The test
skips only when those are not installed; .ci/run installs them.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from src.review.build import queue_from_scores
from src.review.settings import ReviewSettings
from tests.code.test_review_queue import flagged_score_table, label_pipeline, presumed_human_sessions, rerun_labels

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BOTCLICK = Path(sys.executable).with_name("botclick")
TOKEN = "review-token-for-tests-0123456789"
STARTUP_TIMEOUT_S = 60
PAGE_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def review_page(tmp_path_factory: pytest.TempPathFactory):
    """A labels pipeline with two flagged presumed-human sessions, and `botclick review --web` serving them."""
    if not BOTCLICK.is_file():
        pytest.skip(f"console script {BOTCLICK} is not installed; run `make install`")
    workdir = tmp_path_factory.mktemp("review_web")
    cfg, labels = label_pipeline(workdir)
    session_ids = sorted(presumed_human_sessions(labels, 2))
    settings = ReviewSettings.from_config(cfg)
    queue_from_scores(cfg, settings, flagged_score_table(labels, session_ids, workdir / "scores.csv"), model_version="4")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BOTCLICK_ENV"} | {settings.web.token_env: TOKEN}
    log = (workdir / "review_web.log").open("w", encoding="utf-8")
    server = subprocess.Popen(
        [str(BOTCLICK), "review", "--web", "--port", str(port), "--reviewer", "web-tester", "--params", str(workdir / "params.yaml")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server, workdir / "review_web.log")
        yield {"cfg": cfg, "settings": settings, "session_ids": session_ids, "base": base}
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def wait_until_up(base: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"review page exited with {server.returncode}:\n{log_path.read_text(encoding='utf-8')[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"review page not up after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text(encoding='utf-8')[-3000:]}")


def review_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def test_page_needs_token(review_page):
    assert httpx.get(review_page["base"] + "/").status_code == 401
    assert httpx.get(review_page["base"] + "/", params={"token": "wrong-token-wrong-token"}).status_code == 401
    assert httpx.get(review_page["base"] + "/", headers={"Authorization": "Bearer " + TOKEN}).status_code == 200


def test_token_link_sets_httponly_cookie(review_page):
    response = httpx.get(review_page["base"] + "/", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_post_without_token_rejected(review_page):
    session_id = review_page["session_ids"][1]
    response = httpx.post(review_page["base"] + "/label", data={"session_id": session_id, "action": "bot", "nonce": "x"})
    assert response.status_code == 401


def test_post_with_bad_nonce_rejected(review_page):
    session_id = review_page["session_ids"][1]
    response = httpx.post(
        review_page["base"] + "/label",
        data={"session_id": session_id, "action": "bot", "nonce": "0" * 64},
        headers={"Authorization": "Bearer " + TOKEN},
    )
    assert response.status_code == 403
    assert session_id not in {row["session_id"] for row in review_rows(review_page["settings"].reviews_path)}


def test_post_from_other_origin_rejected(review_page):
    response = httpx.post(
        review_page["base"] + "/label",
        data={"session_id": review_page["session_ids"][1], "action": "bot", "nonce": "0" * 64},
        headers={"Authorization": "Bearer " + TOKEN, "Origin": "http://127.0.0.2:9"},
    )
    assert response.status_code == 403


def test_non_loopback_host_header_rejected(review_page):
    response = httpx.get(review_page["base"] + "/healthz", headers={"Host": "review.example"})
    assert response.status_code == 400


@pytest.fixture()
def browser(tmp_path: Path):
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} not found; install Debian's chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed; pip install selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_label_lands_and_changes_labels(review_page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    settings, first = review_page["settings"], review_page["session_ids"][0]
    before = rerun_labels(review_page["cfg"]).set_index("session_id")
    assert before.loc[first, "label_source"] == "none"

    browser.get(f"{review_page['base']}/?token={TOKEN}")
    assert browser.current_url == review_page["base"] + "/"
    assert browser.execute_script("return document.cookie") == ""
    assert browser.find_element(By.ID, "session-id").text == first
    assert "requests per minute" in browser.find_element(By.ID, "reasons").text
    browser.find_element(By.ID, "note").send_keys("checked in the browser")
    browser.find_element(By.ID, "label-bot").click()
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(expected_conditions.text_to_be_present_in_element((By.ID, "message"), "Labelled"))

    assert first in browser.find_element(By.ID, "message").text
    assert browser.find_element(By.ID, "session-id").text == review_page["session_ids"][1]
    rows = [row for row in review_rows(settings.reviews_path) if row["session_id"] == first]
    assert len(rows) == 1
    assert rows[0]["label"] == "bot"
    assert rows[0]["reviewer"] == "web-tester"
    assert rows[0]["model_version"] == "4"
    assert rows[0]["note"] == "checked in the browser"

    after = rerun_labels(review_page["cfg"]).set_index("session_id")
    assert after.loc[first, "label_source"] == "review"
    assert after.loc[first, "label"] == 1


def test_browser_skip_not_written(review_page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    second = review_page["session_ids"][1]
    browser.get(f"{review_page['base']}/?token={TOKEN}")
    if browser.find_elements(By.ID, "done"):
        pytest.fail("queue is empty before the skip test; the label test should leave one session pending")
    assert browser.find_element(By.ID, "session-id").text == second
    browser.find_element(By.ID, "skip").click()
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(expected_conditions.presence_of_element_located((By.ID, "done")))

    assert "Skipped" in browser.find_element(By.ID, "message").text
    assert second not in {row["session_id"] for row in review_rows(review_page["settings"].reviews_path)}
