"""Open the companion's pages in a real headless browser and report what is broken.

A page can look fine as text and still show nothing: an image path off by one folder, a PNG that
did not finish writing, a link to a table that was never saved. This module loads each page in
headless Chromium (Debian's ``chromium`` package) through the DevTools protocol, over a local
HTTP server bound to 127.0.0.1, and asks the page itself:

* every ``<img>`` finished loading with a non-zero natural size;
* every local ``href``/``src`` (links to tables, figures, notebook pages) names a file that exists;
* no request the page made failed (HTTP status >= 400 or a network error).

It needs no Python browser package: the protocol is JSON over a WebSocket (``websocket-client``,
already installed with Jupyter). ``find_chromium`` returns None where no browser is installed,
so callers can skip with that reason.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["PageReport", "find_chromium", "check_pages", "check_companion"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags for a closed network and a root user (see the machine notes): no sandbox, no GPU, no
# background connections, a fresh profile folder.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
          "--window-size=1280,2000")

_PAGE_PROBE = """(() => {
  const imgs = Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                                                     w: i.naturalWidth, h: i.naturalHeight}));
  const refs = [];
  document.querySelectorAll('[href],[src]').forEach(e => {
    const v = e.getAttribute('href') || e.getAttribute('src');
    if (v) refs.push(v);
  });
  return JSON.stringify({title: document.title, imgs: imgs, refs: refs,
                         ready: document.readyState});
})()"""


@dataclass
class PageReport:
    """What the browser saw on one page.

    Attributes
    ----------
    page : str
        The page's path relative to the served root.
    title : str
        ``document.title``.
    n_images : int
        ``<img>`` elements on the page (inline ``data:`` images included).
    broken_images : list of str
        Images that did not load or have zero width or height.
    missing_files : list of str
        Local ``href``/``src`` targets that do not exist on disk.
    failed_requests : list of str
        Requests the page made that failed (``"404 /path"`` or a network error text).
    """

    page: str
    title: str = ""
    n_images: int = 0
    broken_images: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is broken, missing or failed."""
        return not (self.broken_images or self.missing_files or self.failed_requests)

    def summary(self) -> str:
        """One line: ``page: ok, N images`` or what is wrong."""
        if self.ok:
            return f"{self.page}: ok, {self.n_images} images"
        parts = [f"{len(v)} {k}: {', '.join(v[:3])}" for k, v in
                 (("broken images", self.broken_images), ("missing files", self.missing_files),
                  ("failed requests", self.failed_requests)) if v]
        return f"{self.page}: " + "; ".join(parts)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``MSKSEG_CHROMIUM`` first), or None."""
    explicit = os.environ.get("MSKSEG_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    failures: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        if code >= 400 and not self.path.startswith("/favicon.ico"):  # the browser asks on its own
            self.server.failures.append(f"{code} {urllib.parse.unquote(self.path)}")  # type: ignore[attr-defined]
        super().send_response(code, message)


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; yields (base URL, failures)."""
    handler = lambda *a, **kw: _QuietHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.failures = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.failures  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _browser(executable: str, timeout_s: float) -> Iterator[str]:
    """Start headless Chromium with a DevTools port; yields the page target's WebSocket URL."""
    with tempfile.TemporaryDirectory(prefix="mskseg-chromium-") as profile:
        proc = subprocess.Popen([executable, *_FLAGS, "--remote-debugging-address=127.0.0.1",
                                 "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None:
                    raise RuntimeError(f"{executable} exited with status {proc.returncode} before it was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{executable} did not open its DevTools port within {timeout_s:.0f} s")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s) as resp:
                targets = json.loads(resp.read())
            page = next(t for t in targets if t.get("type") == "page")
            yield page["webSocketDebuggerUrl"]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class _DevTools:
    """A minimal DevTools protocol client: send a command, wait for its reply, keep events."""

    def __init__(self, ws_url: str, timeout_s: float) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=timeout_s, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout_s:.0f} s")
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()


def _local_target(ref: str, page_url: str, base_url: str, root: Path) -> Path | None:
    """The file a local reference points at (None for anchors, data: and external URLs)."""
    if ref.startswith(("#", "data:", "javascript:", "mailto:")):
        return None
    absolute = urllib.parse.urljoin(page_url, ref)
    if not absolute.startswith(base_url + "/"):
        return None  # another host: not ours to check (the companion has none)
    path = urllib.parse.unquote(urllib.parse.urlsplit(absolute).path)
    return root / path.lstrip("/")


def _check_one(tools: _DevTools, page_url: str, base_url: str, root: Path, rel: str,
               timeout_s: float) -> PageReport:
    tools.events.clear()
    tools.call("Page.navigate", url=page_url)
    tools.wait_for("Page.loadEventFired", timeout_s)
    result = tools.call("Runtime.evaluate", expression=_PAGE_PROBE, returnByValue=True)
    seen = json.loads(result["result"]["value"])
    report = PageReport(page=rel, title=seen["title"], n_images=len(seen["imgs"]))
    report.broken_images = [i["src"][:80] for i in seen["imgs"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    targets = {ref: _local_target(ref, page_url, base_url, root) for ref in seen["refs"]}
    report.missing_files = sorted({ref for ref, path in targets.items() if path is not None and not path.exists()})
    for event in tools.events:
        if event.get("method") == "Network.loadingFailed":
            report.failed_requests.append(str(event["params"].get("errorText")))
        elif event.get("method") == "Network.responseReceived":
            response = event["params"]["response"]
            if int(response.get("status", 0)) >= 400 and not response["url"].endswith("/favicon.ico"):
                report.failed_requests.append(f"{response['status']} {response['url']}")
    return report


def check_pages(root: Path, pages: Sequence[Path], *, executable: str | None = None,
                timeout_s: float = 60.0) -> list[PageReport]:
    """Load each page of ``pages`` (files under ``root``) in headless Chromium; one report each.

    Parameters
    ----------
    root : Path
        The folder served over HTTP (127.0.0.1 only); pages and everything they refer to must
        lie under it (for the companion: the project root, or any folder holding both the
        tables and the figures folders).
    pages : sequence of Path
        HTML files to open, absolute or relative to ``root``.
    executable : str, optional
        The browser; default ``find_chromium()``.
    timeout_s : float
        Limit for starting the browser and for loading each page.

    Returns
    -------
    list of PageReport
        In the order of ``pages``; ``report.ok`` says whether the page is whole.

    Raises
    ------
    FileNotFoundError
        No browser was found (install Debian's ``chromium``) or a page does not exist.
    """
    root = Path(root).resolve()
    browser = executable or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install Debian's chromium package or set MSKSEG_CHROMIUM)")
    rels = []
    for page in pages:
        path = (root / page) if not Path(page).is_absolute() else Path(page)
        if not path.exists():
            raise FileNotFoundError(f"{path}: page does not exist")
        rels.append(path.resolve().relative_to(root).as_posix())
    reports: list[PageReport] = []
    with _serve(root) as (base_url, failures), _browser(browser, timeout_s) as ws_url:
        tools = _DevTools(ws_url, timeout_s)
        try:
            tools.call("Page.enable")
            tools.call("Network.enable")
            for rel in rels:
                failures.clear()
                url = f"{base_url}/{urllib.parse.quote(rel)}"
                report = _check_one(tools, url, base_url, root, rel, timeout_s)
                report.failed_requests += [f for f in failures if f not in report.failed_requests
                                           and not any(f.split(" ", 1)[-1] in r for r in report.failed_requests)]
                reports.append(report)
        finally:
            tools.close()
    return reports


def check_companion(tables_dir: Path, figures_dir: Path, *, executable: str | None = None,
                    timeout_s: float = 60.0) -> list[PageReport]:
    """Check the companion of one profile: its front page and every rendered notebook page.

    Parameters
    ----------
    tables_dir, figures_dir : Path
        The profile's tables folder (holding ``index.html`` and ``notebooks/``) and figures folder.
    executable, timeout_s
        As for ``check_pages``.

    Returns
    -------
    list of PageReport
        The front page first, then the notebook pages in order.
    """
    tables_dir, figures_dir = Path(tables_dir).resolve(), Path(figures_dir).resolve()
    index = tables_dir / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"{index}: no companion yet; run ./run_all.sh for this profile first")
    pages = [index] + sorted((tables_dir / "notebooks").glob("*.html"))
    root = Path(os.path.commonpath([tables_dir, figures_dir]))
    return check_pages(root, pages, executable=executable, timeout_s=timeout_s)
