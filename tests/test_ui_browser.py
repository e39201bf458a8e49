"""The web playground in a real browser: Debian's headless Chromium driven by Selenium against a
real `indicf5-fast serve --ui` process on 127.0.0.1 (tiny random model, `--preset fast`, an API
key so the login page is part of the run).

Checked: the login asks for the key; the page loads; a voice uploaded through the HTTP API is
chosen in the dropdown; text is typed; Generate gives an <audio> element with a playable source,
the streamed audio starts playing before generation ends; the spectrogram and the WAV/FLAC
downloads are there; an error (empty text) shows its message; nothing is fetched from anywhere
but the server. Saves the screenshot at docs/ui.png.

Skips only when the chromium / chromedriver binaries are absent (`make ui-deps` installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (make ui-deps)",
)

KEY = "browser-key-42"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "ui.png"
# three text chunks for the demo voice (a comma ends each sentence: upstream's splitter point)
LONG = " ".join(["यह एक लंबा वाक्य है, जो कुछ ज़्यादा समय लेगा।"] * 17)


class Server(str):
    """The base URL, with the demo reference beside it."""

    def __new__(cls, url: str, demo_wav: Path, demo_text: str):
        obj = super().__new__(cls, url)
        obj.demo_wav, obj.demo_text = demo_wav, demo_text
        return obj


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_ckpt, tmp_path_factory):
    """`indicf5-fast serve --ui` as its own process; yields its base URL."""
    tmp = tmp_path_factory.mktemp("ui-browser")
    port = _free_port()
    log = open(tmp / "server.log", "w+")  # noqa: SIM115 - closed in finally
    env = os.environ | {"INDICF5_API_KEY": KEY, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    cmd = [sys.executable, "-m", "indicf5_fast.cli", "serve", "--ui", "--model", str(tiny_ckpt)]
    cmd += [
        "--preset",
        "fast",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"server did not become ready (exit {proc.poll()}):\n{log.read()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ready", headers=auth, timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        # a second voice, uploaded through the HTTP API: the page must offer it (shared store)
        wav = tiny_ckpt / "prompts" / "demo.wav"
        text = (tiny_ckpt / "prompts" / "demo.txt").read_text().strip()
        r = httpx.post(
            f"{url}/v1/voices",
            headers=auth,
            data={"name": "asha", "ref_text": text},
            files={"ref_audio": ("asha.wav", wav.read_bytes(), "audio/wav")},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        yield Server(url, wav, text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1150",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # the distribution's driver: Selenium's manager would try to download one
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# Records, in page time, when the stats line first says "Generating" (a chunk arrived), when it
# first shows the final "RTF" (generation over), and when any <audio> first plays with time > 0.
# Media events do not bubble: listen in the capture phase.
TIMING_JS = """
window.__t = {};
const mark = (k) => { if (!window.__t[k]) window.__t[k] = performance.now(); };
document.addEventListener('playing', () => mark('playing'), true);
document.addEventListener('timeupdate', (e) => { if (e.target.currentTime > 0) mark('advancing'); }, true);
new MutationObserver(() => {
  const s = document.querySelector('#indicf5-stats');
  const t = s ? s.textContent : '';
  if (t.includes('Generating')) mark('partial');
  if (t.includes('RTF')) mark('done');
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""

FETCH_JS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async (r) => {
  const b = new Uint8Array(await r.arrayBuffer());
  done([r.status, b.length, String.fromCharCode(...b.slice(0, 4))]);
}).catch((e) => done([0, 0, String(e)]));
"""


def _wait(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[-1500:]
        pytest.fail(f"timed out waiting for {what}; page text:\n{body}")


def _click(d, element, what: str) -> None:
    from selenium.common.exceptions import ElementClickInterceptedException

    def attempt(_d) -> bool:
        try:
            element.click()
            return True
        except ElementClickInterceptedException:  # a progress overlay still covers it
            return False

    _wait(d, attempt, 30, f"{what} to be clickable")


def _set_text(element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    # select-all + delete fires the input events the page listens to (clear() does not)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    if text:
        element.send_keys(text)


def _login(d, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    fields = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"), 30, "login form")
    _set_text(d.find_elements(By.CSS_SELECTOR, "input[type=text]")[0], user)
    _set_text(fields[0], password)
    fields[0].send_keys(Keys.ENTER)


def test_playground_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(f"{server}/ui/")

    # --- login: the API key is the password; a wrong one is refused
    _login(d, "tester", "not-the-key")
    _wait(d, lambda d: "incorrect" in d.find_element(By.TAG_NAME, "body").text.lower(), 15, "login refusal")
    _login(d, "tester", KEY)

    # --- the page loads
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#indicf5-generate"), 30, "the playground page")
    assert "IndicF5 playground" in d.find_element(By.TAG_NAME, "body").text
    assert "Telugu" in d.find_element(By.TAG_NAME, "body").text  # the 11 languages' examples

    # --- choose the voice uploaded through the HTTP API
    voice = d.find_element(By.CSS_SELECTOR, "#indicf5-voice input")
    _click(d, voice, "the voice dropdown")  # covered while the page's load event refreshes it
    option = _wait(
        d,
        lambda d: d.find_elements(By.CSS_SELECTOR, "li[data-testid=dropdown-option][aria-label=asha]"),
        15,
        "voice 'asha' in the dropdown",
    )[0]
    option.click()
    _wait(d, lambda d: voice.get_attribute("value") == "asha", 10, "voice 'asha' chosen")

    # --- type the text, speed 2 (shorter audio, same three chunks)
    _set_text(d.find_element(By.CSS_SELECTOR, "#indicf5-text textarea"), LONG)
    speed = d.find_element(By.CSS_SELECTOR, "input[type=number][aria-label='number input for Speed']")
    _set_text(speed, "2")
    speed.send_keys(Keys.TAB)

    # --- Generate: audio streams, then the full result
    d.execute_script(TIMING_JS)
    d.find_element(By.CSS_SELECTOR, "#indicf5-generate").click()
    _wait(d, lambda d: d.execute_script("return window.__t.done"), 90, "the generation to finish")
    t = d.execute_script("return window.__t")
    stats = d.find_element(By.CSS_SELECTOR, "#indicf5-stats").text
    assert "voice asha" in stats and "time to first audio" in stats, stats
    assert "partial" in t and t["partial"] < t["done"], t  # a chunk was shown before the end
    started = min(t.get("playing", float("inf")), t.get("advancing", float("inf")))
    assert started < t["done"], f"streamed audio did not start before generation ended: {t}"

    audio = d.execute_script(
        "const a = document.querySelector('#indicf5-audio audio');"
        "return a && {src: a.currentSrc || a.src, ready: a.readyState, duration: a.duration, err: a.error};"
    )
    assert audio and audio["src"].startswith(("blob:", "http")), audio
    assert audio["ready"] >= 2 and audio["duration"] > 0 and audio["err"] is None, audio

    # --- spectrogram and downloads
    _wait(
        d,
        lambda d: d.execute_script(
            "const i = document.querySelector('#indicf5-mel img'); return i && i.naturalWidth"
        ),
        15,
        "the spectrogram",
    )
    links = _wait(
        d,
        lambda d: [
            a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#indicf5-files a[href]")
        ],
        15,
        "the download links",
    )
    wav = next(h for h in links if h.endswith(".wav"))
    flac = next(h for h in links if h.endswith(".flac"))
    status, size, magic = d.execute_async_script(FETCH_JS, wav)
    assert (status, magic) == (200, "RIFF") and size > 44 + 24_000, (status, size, magic)
    status, size, magic = d.execute_async_script(FETCH_JS, flac)
    assert (status, magic) == (200, "fLaC"), (status, size, magic)

    d.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert d.save_screenshot(str(SCREENSHOT))

    # --- upload a reference on the page and save it as a named voice: the API sees it
    d.find_element(By.CSS_SELECTOR, "#indicf5-reference button").click()
    upload = _wait(
        d, lambda d: d.find_elements(By.CSS_SELECTOR, "#indicf5-ref-audio input[type=file]"), 10, "upload"
    )[0]
    upload.send_keys(str(server.demo_wav))
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#indicf5-ref-audio audio"), 20, "the uploaded audio")
    _set_text(d.find_element(By.CSS_SELECTOR, "#indicf5-ref-text textarea"), server.demo_text)
    _set_text(
        d.find_element(By.CSS_SELECTOR, "#indicf5-voice-name textarea, #indicf5-voice-name input"), "mine"
    )
    d.find_element(By.CSS_SELECTOR, "#indicf5-save").click()
    _wait(d, lambda d: "Saved voice 'mine'" in d.find_element(By.TAG_NAME, "body").text, 30, "the save")
    _wait(d, lambda d: voice.get_attribute("value") == "mine", 10, "voice 'mine' chosen")
    r = httpx.get(f"{server}/v1/voices/mine", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["ref_text"] == server.demo_text, r.text

    # --- an error shows its message (and no traceback)
    _set_text(d.find_element(By.CSS_SELECTOR, "#indicf5-text textarea"), "")
    d.find_element(By.CSS_SELECTOR, "#indicf5-generate").click()
    _wait(d, lambda d: "text is empty" in d.find_element(By.TAG_NAME, "body").text, 20, "the error message")
    assert "Traceback" not in d.find_element(By.TAG_NAME, "body").text

    # --- offline: every request went to this server (chrome:// and data: are the browser's own)
    urls = set()
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.add(msg["params"].get("request", {}).get("url") or msg["params"].get("url", ""))
    outside = sorted(u for u in urls if u.startswith(("http", "ws")) and not u.startswith(server))
    assert urls and not outside, outside
