"""The live view in a real headless browser: Debian's Chromium driven by Selenium through
the system chromedriver, during a real `python train.py --web` run.

    apt-get install -y chromium chromium-driver      # once; .ci/run does it in CI
    python -m pytest -m browser                      # the browser tier (see conftest.py)
    NEURAL_STYLE_SCREENSHOT=1 python -m pytest -m browser   # and rewrite docs/live-view.png

The test fails (never skips) when the browser or its driver is missing.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tests.support import FEW_LAYER_FLAGS, REPO_ROOT, photo, write_image

# Chromium and its driver: outside the fast tier (conftest.py), run by CI with --full.
pytestmark = pytest.mark.browser

CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = os.path.join(REPO_ROOT, "docs", "live-view.png")
INSTALL = "apt-get install -y chromium chromium-driver"


def browser():
    """Headless Chromium through the system chromedriver (no Selenium Manager download)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: python -m pip install -e '.[test]'")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary or not os.path.exists(CHROMEDRIVER):
        pytest.fail(f"the browser test needs Chromium and its driver: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Run:
    """`python train.py --web --web_port=0 ...` in the background, its output collected."""

    def __init__(self, *arguments: str):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--web", "--web_port=0",
             *arguments],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.fullmatch(r"live view: (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
                if found:
                    return found[1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no live view URL; the run said:\n" + "\n".join(self.lines))

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_watch_and_stop_a_run_in_a_real_browser(tmp_path, tiny_mat):
    screenshot = os.environ.get("NEURAL_STYLE_SCREENSHOT") == "1"
    width = 512 if screenshot else 96
    content = write_image(tmp_path / "content.jpg", photo(width * 3 // 4, width, seed=1))
    style = write_image(tmp_path / "style.png", photo(64, 64, seed=8)[::-1, ::-1])
    if screenshot:  # the repository's own pictures look better in the docs
        content = shutil.copy(os.path.join(REPO_ROOT, "images", "content.jpg"), tmp_path)
        style = shutil.copy(os.path.join(REPO_ROOT, "images", "style.jpg"), tmp_path)
    before = {path: pathlib.Path(path).read_bytes() for path in (content, style)}
    output = tmp_path / "out" / "result"
    # The page is tested, not the painting: the first two blocks' layers, a quicker trace
    # (the screenshot for the docs keeps the paper's).
    layers = () if screenshot else FEW_LAYER_FLAGS
    run = Run(  # before the browser, so that the two start up together
        f"--content_image={content}",
        f"--style_image={style}",
        f"--vgg_model_path={tiny_mat}",
        f"--output_image={output}",
        f"--image_width={width}",
        "--train_steps=100000",
        "--print_every=1000",
        "--precision=float32",
        "--web_every=0.3",
        *layers,
    )
    try:
        driver = browser()
    except BaseException:
        run.end()
        raise
    try:
        driver.get(run.url())
        assert driver.title == "neural-style live view"
        status = driver.find_element("id", "status")
        wait_for(lambda: status.text == "running", 60, "the run to start")
        image = driver.find_element("id", "current")
        first = wait_for(lambda: image.get_attribute("src"), 30, "a first image")
        wait_for(lambda: image.get_attribute("src") != first, 30, "the image to change")
        wait_for(
            lambda: driver.execute_script("return arguments[0].naturalWidth", image) > 0,
            10,
            "the image to load",
        )
        plot = driver.find_element("id", "plot")
        points = int(plot.get_attribute("data-points"))
        wait_for(lambda: int(plot.get_attribute("data-points")) > points, 30, "more points")
        if screenshot:  # a picture of the run well under way
            wait_for(lambda: int(plot.get_attribute("data-points")) >= 60, 120, "60 points")
            driver.save_screenshot(SCREENSHOT)
        driver.find_element("id", "stop").click()
        assert run.process.wait(60) == 130
        wait_for(lambda: status.text.startswith("stopped"), 10, "the page to say stopped")
        assert image.get_attribute("src")  # the final image stays on the page
    finally:
        driver.quit()
        run.end()
    said = "\n".join(run.lines)
    assert re.search(r"interrupted at step \d+: saved \S+result\.jpg and a checkpoint", said)
    assert os.path.exists(f"{output}.jpg") and os.path.exists(f"{output}-checkpoint.npz")
    assert "Traceback" not in said
    assert {path: pathlib.Path(path).read_bytes() for path in before} == before
