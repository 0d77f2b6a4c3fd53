"""The web page in a real headless browser: Debian's chromium, driven through its
chromium-driver (installed by tests/run). With IMAGEEXTRACT_SCREENSHOTS set to a folder,
each page's screenshot is written there (docs/screenshots holds the README's)."""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from extraction.pdf import render_pages
from tests.conftest import Caller
from tests.e2e.worker.test_grounding import TEMPLATE, _printed_size
from tests.sample_images import png_for
from tests.sample_pdfs import line_top, text_pdf

# Read at import: the stack's fixtures clear every IMAGEEXTRACT_ variable.
SCREENSHOTS = os.environ.get("IMAGEEXTRACT_SCREENSHOTS")


# Once, with images in a folder: it does not depend on where the server keeps images.
pytestmark = pytest.mark.one_store


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium, "chromium is not installed (tests/run installs it)"
    assert driver, "chromium-driver is not installed (tests/run installs it)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                     "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    # No network beyond loopback, as on a machine offline: every other host goes through a
    # proxy that is not there (the discard port); chromium never sends loopback to a proxy.
    options.add_argument("--proxy-server=http://127.0.0.1:9")
    with webdriver.Chrome(options=options, service=webdriver.ChromeService(driver)) as chrome:
        yield chrome


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # the page is still changing under us
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not {what} after {timeout} s")
        time.sleep(0.1)


def _shot(browser: WebDriver, name: str, tmp_path: Path) -> None:
    folder = Path(SCREENSHOTS or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.get_window_size()["width"]
    browser.set_window_size(width, min(max(int(height) + 120, 600), 2400))
    browser.save_screenshot(str(folder / f"{name}.png"))


def _field(browser: WebDriver, path: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'#result .field[data-path="{path}"]')


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    """Whether the rectangle ``inner`` lies within ``outer`` (WebElement.rect's)."""
    return (
        outer["x"] <= inner["x"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
        and outer["y"] <= inner["y"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    )


def test_sign_in_run_the_playground_see_the_evidence_and_cancel_a_running_job(
    browser: WebDriver,
    caller: Caller,
    api_url: str,
    tmp_path: Path,
    cpu_worker_process: Path,
    fake_model: Callable[..., Any],
) -> None:
    browser.set_window_size(1280, 900)
    browser.get(f"{api_url}/")
    # A wrong key is refused on the page; the right one signs in.
    key = _wait("the sign-in form", lambda: browser.find_element(By.ID, "key"))
    key.send_keys("iek_wrong", Keys.ENTER)
    _wait(
        "refused", lambda: "not valid" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    )
    _shot(browser, "sign-in", tmp_path)
    key.clear()
    key.send_keys(caller.key, Keys.ENTER)
    _wait("the playground", lambda: browser.find_element(By.TAG_NAME, "h1").text == "Playground")
    assert browser.execute_script("return sessionStorage.getItem('imageextract.key')") == caller.key
    assert browser.execute_script("return localStorage.length") == 0

    data, _boxes = _printed_size()
    image = tmp_path / "size.png"
    image.write_bytes(data)
    browser.find_element(By.ID, "image").send_keys(str(image))
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys(TEMPLATE)
    browser.find_element(By.ID, "run").click()
    width = _wait("the result", lambda: _field(browser, "width"))
    assert "480" in width.text
    assert "320" in _field(browser, "height").text
    assert "on the image" in width.text
    boxes = browser.find_elements(By.CSS_SELECTOR, ".figure .box")
    assert len(boxes) == 2
    # Hovering a field lights its box up; so does reaching it with the keyboard.
    ActionChains(browser).move_to_element(width).perform()
    _wait("the width's box lit", lambda: browser.find_element(
        By.CSS_SELECTOR, '.box.active[data-path="width"]'))  # fmt: skip
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    width.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("data-path") == "height"
    _wait("the height's box lit", lambda: browser.find_element(
        By.CSS_SELECTOR, '.box.active[data-path="height"]'))  # fmt: skip
    assert "curl -s" in browser.find_element(By.ID, "code").text
    assert "from imageextract import Client" in browser.find_element(By.ID, "code").text
    _shot(browser, "playground", tmp_path)

    # A running job in the list, cancelled from it.
    fake_model(hold=1)
    submitted = caller.client.post(
        "/v1/jobs", files=[("images", (f"{i}.png", png_for(i), "image/png")) for i in range(3)],
        data={"prompt": "Size?"},
    ).json()  # fmt: skip
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    row = f'tr[data-job="{submitted["id"]}"]'
    cancel = _wait("the job listed", lambda: browser.find_element(
        By.CSS_SELECTOR, f"{row} button[data-cancel]"))  # fmt: skip
    _shot(browser, "jobs", tmp_path)
    cancel.click()
    _wait("cancelled", lambda: browser.find_element(
        By.CSS_SELECTOR, f'{row} td[data-status="cancelled"]'))  # fmt: skip
    fake_model(hold=0)
    assert caller.client.get(f"/v1/jobs/{submitted['id']}").json()["status"] == "cancelled"

    # A job's page: its images and downloads.
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    _wait("the job's page", lambda: browser.find_element(By.TAG_NAME, "h1").text.startswith("Job "))
    _wait("its images", lambda: len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3)
    _shot(browser, "job", tmp_path)

    # The account: balance, ledger, a new key shown once.
    browser.find_element(By.LINK_TEXT, "Account").click()
    balance = caller.client.get("/v1/account").json()["balance"]
    _wait(
        "the balance", lambda: browser.find_element(By.ID, "balance").text == f"{balance} credits"
    )
    # The keys' section comes after the ledger, which loads after the balance.
    create = _wait("the keys", lambda: browser.find_element(
        By.XPATH, "//button[text()='Create a key']"))  # fmt: skip
    create.click()
    secret = _wait(
        "the new key", lambda: browser.find_element(By.CSS_SELECTOR, "#new-key code").text
    )
    assert httpx.get(
        f"{api_url}/v1/account", headers={"Authorization": f"Bearer {secret}"}
    ).is_success
    _shot(browser, "account", tmp_path)

    # Nothing but this server was asked for anything.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {api_url}


def test_a_pdf_in_the_playground_shows_its_pages_with_each_box_on_its_page(
    browser: WebDriver,
    caller: Caller,
    api_url: str,
    settings: Any,
    tmp_path: Path,
    cpu_worker_process: Path,
) -> None:
    # The fake model answers the first page's size, as the worker drew it for the model;
    # the PDF prints the width on page 1 and the height on page 2.
    side = settings.max_image_side
    width = next(render_pages(text_pdf([["x"]]), max_side=side, name="test")).image.width
    document = tmp_path / "invoice.pdf"
    document.write_bytes(
        text_pdf([["Invoice 7", f"Width: {width} px"], ["Totals", f"Height: {side} px"]])
    )
    browser.set_window_size(1280, 900)
    browser.get(f"{api_url}/")
    browser.execute_script(f"sessionStorage.setItem('imageextract.key', '{caller.key}')")
    browser.get(f"{api_url}/#/playground")
    prompt = _wait("the playground", lambda: browser.find_element(By.ID, "prompt"))
    browser.find_element(By.ID, "image").send_keys(str(document))
    _wait("both pages", lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pages .figure")) == 2)
    assert "Page 2 of 2" in browser.find_element(By.ID, "pages").text
    assert browser.find_element(By.ID, "document-mode").is_displayed()
    prompt.clear()
    prompt.send_keys(TEMPLATE)
    browser.find_element(By.ID, "run").click()
    height = _wait("the result", lambda: _field(browser, "height"))
    assert str(side) in height.text
    assert "on page 2" in height.text
    assert "on page 1" in _field(browser, "width").text

    # Hovering the height brings page 2 into view, drawn, its box lit on it where the height
    # is printed.
    ActionChains(browser).move_to_element(height).perform()
    lit = '#pages .figure[data-page="2"] .box.active[data-path="height"]'
    box = _wait("the height's box lit", lambda: browser.find_element(By.CSS_SELECTOR, lit))
    page_two = _wait("page 2 drawn", lambda: next(
        image for image in browser.find_elements(By.CSS_SELECTOR, '.figure[data-page="2"] img')
        if image.is_displayed() and image.get_property("naturalWidth")))  # fmt: skip
    outer, inner = page_two.rect, box.rect
    assert _inside(inner, outer), (inner, outer)
    top = (inner["y"] - outer["y"]) / outer["height"]
    assert line_top(1) - 0.02 <= top <= line_top(1) + 0.02
    assert "invoice.pdf" in browser.find_element(By.ID, "code").text
    _shot(browser, "playground-pdf", tmp_path)

    # The job's page: the PDF's pages and how each was read.
    browser.find_element(By.LINK_TEXT, "See the job").click()
    pages = _wait(
        "the PDF's pages", lambda: browser.find_element(By.CSS_SELECTOR, "td[data-pages]")
    )
    assert pages.text.startswith("2 pages")
    assert "pages 1\N{EN DASH}2: read as a picture" in pages.text
    browser.set_window_size(1280, 900)


# A file name that a shell, or Python, would run or misread if pasted unquoted.
HOSTILE_NAME = 'a\'b $(touch x) "c".png'


def _curl_arguments(snippet: str) -> list[str]:
    """The curl snippet's words, as a POSIX shell splits them (lines joined)."""
    return shlex.split(snippet.replace("\\\n", " "))


def _python_images(snippet: str) -> Any:
    """The value the Python snippet passes as ``images=``, parsed as Python parses it."""
    calls = (node for node in ast.walk(ast.parse(snippet)) if isinstance(node, ast.Call))
    keyword = next(word for call in calls for word in call.keywords if word.arg == "images")
    return ast.literal_eval(keyword.value)


def test_a_job_url_cannot_make_cancel_purge_and_the_snippets_quote_the_file_name(
    browser: WebDriver,
    caller: Caller,
    api_url: str,
    tmp_path: Path,
    cpu_worker_process: Path,
    fake_model: Callable[..., Any],
) -> None:
    browser.set_window_size(1280, 900)
    browser.get(f"{api_url}/")
    browser.execute_script(f"sessionStorage.setItem('imageextract.key', '{caller.key}')")
    browser.get(f"{api_url}/#/playground")
    _wait("the playground", lambda: browser.find_element(By.ID, "prompt"))
    image = tmp_path / HOSTILE_NAME
    image.write_bytes(png_for(0))
    browser.find_element(By.ID, "image").send_keys(str(image))
    browser.find_element(By.ID, "run").click()
    snippets = _wait("the snippets", lambda: browser.find_elements(By.CSS_SELECTOR, "#code pre"))
    curl, python = (snippet.get_property("textContent") for snippet in snippets)
    assert """-F 'images=@a'\\''b $(touch x) "c".png'""" in curl
    assert f"images=@{HOSTILE_NAME}" in _curl_arguments(curl)
    assert """images=["a'b $(touch x) \\"c\\".png"]""" in python
    assert _python_images(python) == [HOSTILE_NAME]
    # Names curl's -F would split (at ; or ,) or unquote are quoted for curl inside the
    # shell's quotes; Python gets an escaped literal whatever the name holds.
    for name, curl_word in {
        "x\\y.pdf": "x\\y.pdf",
        "a;b,c.png": '"a;b,c.png"',
        '"q\\.png': '"\\"q\\\\.png"',
        " na\u00efve \u20ac\t.png": '" na\u00efve \u20ac\t.png"',
    }.items():
        made = browser.execute_script(
            "return snippets(location.origin, 'p', true, 'general', arguments[0], null)", name
        )
        assert f"images=@{curl_word}" in _curl_arguments(made["curl"]), made["curl"]
        assert _python_images(made["python"]) == [name], made["python"]

    # A running job's page reached with ?purge=true after its id: Cancel cancels, and the
    # job keeps its items.
    fake_model(hold=1)
    submitted = caller.client.post(
        "/v1/jobs", files=[("images", (f"{i}.png", png_for(i), "image/png")) for i in range(2)],
        data={"prompt": "Size?"},
    ).json()  # fmt: skip
    browser.get(f"{api_url}/#/job/{submitted['id']}?purge=true")
    cancel = _wait("the Cancel button", lambda: browser.find_element(
        By.XPATH, "//button[text()='Cancel']"))  # fmt: skip
    cancel.click()
    status = "//dt[text()='Status']/following-sibling::dd[1]"
    _wait("cancelled", lambda: browser.find_element(By.XPATH, status).text == "cancelled")
    fake_model(hold=0)
    answer = caller.client.get(f"/v1/jobs/{submitted['id']}")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["purged_at"] is None
    assert len(caller.client.get(f"/v1/jobs/{submitted['id']}/items").json()["items"]) == 2
    # The page dropped what followed the id from the address.
    assert browser.execute_script("return location.hash") == f"#/job/{submitted['id']}"

    # Anything but a job id after #/job/ leads to the jobs' list.
    browser.get(f"{api_url}/#/job/not-a-job")
    _wait("the jobs' list", lambda: browser.find_element(By.TAG_NAME, "h1").text == "Jobs")


def test_the_page_is_readable_at_360_px_and_forbids_other_scripts(
    browser: WebDriver, caller: Caller, api_url: str, tmp_path: Path
) -> None:
    page = httpx.get(f"{api_url}/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "<script>" not in page.text  # no inline script: the policy would refuse it
    assert httpx.get(f"{api_url}/web/../api/app.py").status_code == 404
    browser.set_window_size(360, 800)
    browser.get(f"{api_url}/")
    browser.execute_script(f"sessionStorage.setItem('imageextract.key', '{caller.key}')")
    browser.get(f"{api_url}/#/playground")
    _wait("the playground", lambda: browser.find_element(By.ID, "prompt"))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 360
    _shot(browser, "playground-360px", tmp_path)
    browser.set_window_size(1280, 900)


def test_the_api_docs_render_with_no_other_host(browser: WebDriver, api_url: str) -> None:
    browser.get(f"{api_url}/docs")
    operation = _wait("the operations listed", lambda: browser.find_element(
        By.CSS_SELECTOR, ".opblock"))  # fmt: skip
    assert "/v1/jobs" in browser.find_element(By.ID, "swagger-ui").text
    # Swagger UI's stylesheet came too: the operations are drawn as boxes.
    assert operation.value_of_css_property("border-style") == "solid"
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) == {api_url}
