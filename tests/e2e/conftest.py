"""The browser page against the real ``iotnotify local``, in Debian's Chromium.

``stack`` runs ``iotnotify local --port 0`` as a subprocess (as a user would)
and reads its state file; ``open_page`` gives each test fresh browser
contexts (separate cookies and sessionStorage, so alice and bob are two
people) and fails the test on any console error or uncaught exception the
page causes. Chromium also logs failed *network* requests as console errors
(a 400 from Cognito for a wrong password, a refused WebSocket while the
emulator is down); a test that expects those names them with
``allow_network_errors``, anything else still fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.local_process import IOTNOTIFY, LocalProcess, start_local

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = Path(__file__).resolve().parent / "artifacts"
README_SCREENSHOT: Final = ROOT / "docs" / "screenshot-web.png"
WEB_DIST: Final = ROOT / "web" / "dist"
CHROMIUM: Final = "/usr/bin/chromium"
# Playwright cannot download its own browser here; these make Debian's
# Chromium quiet and self-contained (no sandbox: tests may run as root).
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Chromium's own lines for a failed request: no JS arguments, fixed prefixes.
_NETWORK_LINE: Final = re.compile(r"^(Failed to load resource|WebSocket connection to )")


class LocalStack(LocalProcess):
    """A running ``iotnotify local`` and what its state file says."""

    @property
    def web_url(self) -> str:
        return str(self.state["webUrl"])

    def send(self, user: str, title: str, body: str = "") -> dict[str, Any]:
        """``iotnotify send --user ... --json``, as a game server would run it."""
        result = subprocess.run(
            [
                IOTNOTIFY,
                "send",
                "--user",
                user,
                "--title",
                title,
                "--state-file",
                str(self.state_file),
                "--json",
                body,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.stdout.strip(), f"iotnotify send failed:\n{result.stderr}"
        answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        # Exit status 1 when a user was not reached live (a send during an
        # outage, stored for the catch-up), 0 when everyone was.
        reached = all(item["ok"] for item in answer["results"])
        assert result.returncode == (0 if reached else 1), (
            f"iotnotify send exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
        return answer

    def restart_emulator(self, down_seconds: float) -> None:
        """Drop every MQTT connection and refuse new ones for ``down_seconds``.

        The emulator's restart control: ``POST {iotDataUrl}/_emulator/restart
        ?downSeconds=N`` (or the URL the state file names as
        ``extra.emulatorRestartUrl``).
        """
        base = self.state.get("extra", {}).get("emulatorRestartUrl") or (
            f"{self.state['iotDataUrl']}/_emulator/restart"
        )
        url = f"{base}?downSeconds={down_seconds:g}"
        secret = self.state.get("extra", {}).get("emulatorAdminSecret", "")
        request = urllib.request.Request(
            url, data=b"", method="POST", headers={"X-Emulator-Secret": secret}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status in (200, 202, 204), response.status
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"the emulator restart control is missing or failed: POST {url} answered "
                f"{exc.code} {exc.read()[:300]!r}"
            ) from exc


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    assert (WEB_DIST / "index.html").is_file(), "web/dist is not built: run `make setup`"
    workdir = tmp_path_factory.mktemp("e2e-stack")
    running = start_local(workdir / "state.json", "--port", "0", cwd=workdir, kind=LocalStack)
    try:
        if not running.wait_ready():
            raise RuntimeError(
                f"iotnotify local did not become ready (exit code {running.process.poll()}):\n"
                + running.output()[-4000:]
            )
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} is missing: `make setup` installs Debian's chromium"
    )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class UserPage:
    """One person's tab, with what went wrong in it."""

    name: str
    context: BrowserContext
    page: Page
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow_network_errors(self, pattern: str) -> None:
        """Failed requests whose URL matches ``pattern`` are expected (not page bugs)."""
        self.allowed.append(re.compile(pattern))

    def allow_mqtt_outage(self) -> None:
        """The page's failed MQTT WebSocket attempts (and the browser's line
        logging each) are expected: the test takes the emulator down."""
        self.allow_network_errors(r"^wss?://[^/]+/mqtt\?")
        self.allow_network_errors(r"^WebSocket connection to 'wss?://[^/]+/mqtt\?")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        if _NETWORK_LINE.match(message.text) and not message.args:
            if any(p.search(url) or p.search(message.text) for p in self.allowed):
                return
            self.problems.append(f"network error logged: {message.text} ({url})")
            return
        self.problems.append(f"console.error: {message.text} ({url})")

    def on_page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught exception: {error}")

    def assert_clean(self) -> None:
        assert not self.problems, f"{self.name}'s page logged errors:\n" + "\n".join(self.problems)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path


OpenPage = Callable[..., UserPage]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """``open_page(name, viewport=..., init_script=...)``: a new person's tab."""
    opened: list[UserPage] = []

    def open_(
        name: str,
        *,
        viewport: ViewportSize | None = None,
        init_script: str | None = None,
    ) -> UserPage:
        context = browser.new_context(
            viewport=viewport or {"width": 1100, "height": 720},
            locale="en-GB",
            timezone_id="UTC",
            color_scheme="light",
        )
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        user_page = UserPage(name=name, context=context, page=page)
        page.on("console", user_page.on_console)
        page.on("pageerror", user_page.on_page_error)
        opened.append(user_page)
        return user_page

    yield open_
    for user_page in opened:
        user_page.context.close()
    problems = [p for user_page in opened for p in user_page.problems]
    assert not problems, "pages logged errors:\n" + "\n".join(problems)


def sign_in(user_page: UserPage, stack: LocalStack, name: str) -> None:
    """Signs ``name`` in through the form and waits until the page is live."""
    page = user_page.page
    user = stack.user(name)
    page.goto(stack.web_url)
    page.get_by_label("E-mail").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#whoami")).to_have_text(user["username"])
    expect_status(page, "live")


def expect_status(page: Page, state: str, timeout: float = 15_000) -> None:
    expect(page.locator("#status")).to_have_attribute("data-state", state, timeout=timeout)


def unique(label: str) -> str:
    """``label`` with a random suffix: the stack is shared by the module's tests."""
    return f"{label} {uuid.uuid4().hex[:6]}"


def toast(page: Page, title: str) -> Locator:
    return page.get_by_role("region", name="New notifications").locator(".toast", has_text=title)


def unread_item(page: Page, title: str) -> Locator:
    return (
        page.get_by_role("list", name="Unread notifications", exact=True)
        .get_by_role("listitem")
        .filter(has=page.get_by_role("heading", name=title, exact=True))
    )
