"""A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Only the standard library: Chromium reads commands from its file descriptor 3 and
writes answers and events to its descriptor 4, as NUL-terminated JSON messages
(the transport Puppeteer and Playwright use). Nothing is downloaded; the browser
is Debian's ``chromium`` found on PATH.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Browser", "CDPError", "Page", "chromium_path", "launch"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
)


class CDPError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


def chromium_path() -> str | None:
    """The Chromium executable, or None when there is none here."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process, driven through its debugging pipe."""

    def __init__(self, executable: str, user_data_dir: str, width: int = 1400, height: int = 800) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:  # in the child, before exec: fd 3 in, fd 4 out
            # Move both out of the way first: either may itself be fd 3 or 4.
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,  # the pipe ends are not inheritable: only fds 3 and 4 reach the child
            preexec_fn=wire_pipes,  # noqa: PLW1509 - tests are single-threaded here
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.width, self.height = width, height

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                msg = f"chromium closed its debugging pipe; its stderr:\n{stderr[-2000:]}"
                raise CDPError(msg)
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events that arrive meanwhile."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(max(0.0, deadline - time.monotonic()))
            if message is None:
                msg = f"no answer to {method} within {timeout}s"
                raise CDPError(msg)
            if message.get("id") == wanted:
                if "error" in message:
                    msg = f"{method} failed: {message['error']}"
                    raise CDPError(msg)
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str, session: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """The first event called ``method`` (already received or still to come)."""
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event["method"] == method and (session is None or event.get("sessionId") == session):
                    self.events.remove(event)
                    return event
            message = self._read(max(0.0, deadline - time.monotonic()))
            if message is None:
                msg = f"no {method} event within {timeout}s"
                raise CDPError(msg)
            if "method" in message:
                self.events.append(message)

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            if self.process.stderr:
                self.process.stderr.close()


class Page:
    """One tab: navigate, evaluate, click, screenshot; records errors and dialogs."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self._handled: set[int] = set()
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": browser.width, "height": browser.height, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        return self.browser.call(method, params, self.session, timeout)

    def _events(self, *methods: str) -> list[dict[str, Any]]:
        self.call("Runtime.evaluate", {"expression": "0"})  # drain what is in flight
        return [e for e in self.browser.events if e.get("sessionId") == self.session and e["method"] in methods]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, as text."""
        found = []
        for event in self._events("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded"):
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:2000])
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"])[:2000])
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def dialogs(self) -> list[str]:
        """Messages of the alert/confirm/prompt dialogs that opened (each dismissed at once)."""
        return [e["params"]["message"] for e in self._events("Page.javascriptDialogOpening")]

    def navigate(self, url: str, timeout: float = 60) -> None:
        self.browser.send("Page.navigate", {"url": url}, self.session)
        deadline = time.monotonic() + timeout
        while True:
            for event in list(self.browser.events):
                if event.get("sessionId") != self.session:
                    continue
                if event["method"] == "Page.javascriptDialogOpening" and id(event) not in self._handled:
                    self._handled.add(id(event))  # a dialog blocks the page until it is dismissed
                    self.browser.send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
                if event["method"] == "Page.loadEventFired":
                    self.browser.events.remove(event)
                    return
            message = self.browser._read(max(0.0, deadline - time.monotonic()))
            if message is None:
                msg = f"{url} did not finish loading within {timeout}s"
                raise CDPError(msg)
            if "method" in message:
                self.browser.events.append(message)

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, timeout
        )
        if "exceptionDetails" in result:
            msg = f"{expression!r} raised: {json.dumps(result['exceptionDetails'])[:2000]}"
            raise CDPError(msg)
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real left click (move, press, release) at viewport coordinates."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))


@contextmanager
def launch(executable: str, width: int = 1400, height: int = 800) -> Iterator[Browser]:
    """A headless Chromium with a throwaway profile, closed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tracedfuture-chromium-") as profile:
        browser = Browser(executable, profile, width, height)
        try:
            yield browser
        finally:
            browser.close()
