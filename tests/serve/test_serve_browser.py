"""The chat page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): type a
message and see the reply stream in; stop a long reply. Skipped where Chromium or its driver is missing."""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest
from serve_helpers import health, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromium-driver (apt)"),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="alm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # An explicit driver path: selenium never goes looking for (downloading) one.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def assistant_messages(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".message.assistant")


def send(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def test_a_message_gets_a_streamed_reply_and_the_conversation_stays(browser, chat_served):
    from selenium.webdriver.common.by import By

    with serving(chat_served) as server:
        browser.get(server.url + "/")
        wait(lambda: "chatty" in browser.find_element(By.ID, "model").text)
        temperature = browser.find_element(By.ID, "temperature")
        browser.execute_script(
            "arguments[0].value = '0'; arguments[0].dispatchEvent(new Event('input'))", temperature
        )
        send(browser, "Hi")
        first = wait(
            lambda: [m for m in assistant_messages(browser) if m.get_attribute("data-state") == "done"]
        )
        assert first[0].find_element(By.CLASS_NAME, "text").text == "Hello there!"
        send(browser, "What is 2 + 3?")
        wait(
            lambda: (
                len([m for m in assistant_messages(browser) if m.get_attribute("data-state") == "done"]) == 2
            )
        )
        texts = [m.find_element(By.CLASS_NAME, "text").text for m in assistant_messages(browser)]
        assert texts == ["Hello there!", "5"]
        users = [m.text for m in browser.find_elements(By.CSS_SELECTOR, ".message.user")]
        assert users == ["Hi", "What is 2 + 3?"]


def test_stop_ends_a_long_reply_and_frees_the_server(browser, base_served):
    from selenium.webdriver.common.by import By

    with serving(base_served, max_tokens_limit=100_000) as server:
        browser.get(server.url + "/")
        wait(lambda: "base" in browser.find_element(By.ID, "model").text)
        assert "base model" in browser.find_element(By.ID, "notice").text  # completion mode
        tokens = browser.find_element(By.ID, "max-tokens")
        tokens.clear()
        tokens.send_keys("100000")
        send(browser, "Once upon a time")
        reply = wait(lambda: assistant_messages(browser))[0]
        wait(lambda: len(reply.find_element(By.CLASS_NAME, "text").text) > 5)  # streaming has begun
        stop = browser.find_element(By.ID, "stop")
        assert stop.is_enabled() and not browser.find_element(By.ID, "send").is_enabled()
        stop.click()
        wait(lambda: reply.get_attribute("data-state") == "stopped")
        assert "(stopped)" in reply.text
        assert browser.find_element(By.ID, "send").is_enabled()
        wait(lambda: health(server)["sequences"] == 0, timeout=10)  # the disconnect cancelled the generation
