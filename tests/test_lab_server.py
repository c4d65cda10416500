"""./run_lab.sh starts JupyterLab on notebooks/ (127.0.0.1 only, bounded in time): it lists the
notebooks, a kernel started through the REST API imports mskseg_lib from this checkout with the
chosen profile, and a notebook saved through the contents API is stored without outputs with its
jupytext pair written beside it (so what a researcher saves can be committed as it is)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from mskseg_lib.notebook_files import pair_problems

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
TOKEN = uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(port: int, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    port = _free_port()
    log = tmp_path_factory.mktemp("lab") / "lab.log"
    env = {**os.environ, "MSKSEG_PROFILE": "default"}  # --profile must win over the environment
    with open(log, "w") as fh:
        proc = subprocess.Popen(["./run_lab.sh", "--profile", "fixture", "--no-browser", f"--port={port}",
                                 f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0"],
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                _api(port, "GET", "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _execute(port: int, kernel_id: str, code: str, timeout_s: float = 60) -> str:
    """Run ``code`` in the kernel over its WebSocket channel; returns what it printed."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={TOKEN}",
                                     timeout=timeout_s)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                                   "session": uuid.uuid4().hex, "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": False,
                                    "user_expressions": {}, "allow_stdin": False}}))
    out, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
    raise TimeoutError(f"no reply within {timeout_s} s")


def test_lab_lists_the_notebooks(lab: int) -> None:
    listing = _api(lab, "GET", "/api/contents/")
    names = {item["name"] for item in listing["content"]}
    expected = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert len(expected) == 7 and expected <= names


def test_kernel_imports_the_project_with_the_chosen_profile(lab: int) -> None:
    specs = _api(lab, "GET", "/api/kernelspecs")
    assert specs["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3 (mskseg)"
    # as JupyterLab does when a notebook is opened: a session for its path starts the kernel
    session = _api(lab, "POST", "/api/sessions", {"path": "01_dataset_overview.ipynb", "type": "notebook",
                                                   "name": "", "kernel": {"name": "python3"}})
    kernel = session["kernel"]
    try:
        printed = _execute(lab, kernel["id"], "import os, sys, mskseg_lib\n"
                                              "print(mskseg_lib.__file__); print(os.environ['MSKSEG_PROFILE']);"
                                              " print(sys.executable); print(os.getcwd())")
    finally:
        _api(lab, "DELETE", f"/api/sessions/{session['id']}")
    module, profile, executable, cwd = printed.split()
    assert Path(module).resolve() == ROOT / "mskseg_lib" / "__init__.py"
    assert profile == "fixture"
    assert Path(executable).parent.parent == ROOT / ".venv"
    assert Path(cwd).resolve() == ROOT / "notebooks"


def test_saved_notebook_has_no_outputs_and_its_pair(lab: int) -> None:
    folder = f"_lab_save_check_{uuid.uuid4().hex[:8]}"
    on_disk = ROOT / "notebooks" / folder
    try:
        _api(lab, "PUT", f"/api/contents/{folder}", {"type": "directory"})
        nb = nbformat.read(ROOT / "notebooks" / "01_dataset_overview.ipynb", as_version=4)
        nb.cells[0].source += "\n\nAn edit made in JupyterLab."
        code = next(c for c in nb.cells if c.cell_type == "code")
        code.outputs = [nbformat.v4.new_output("stream", text="an output\n")]
        code.execution_count = 7
        _api(lab, "PUT", f"/api/contents/{folder}/edited.ipynb", {"type": "notebook", "format": "json", "content": nb})
        stored = nbformat.read(on_disk / "edited.ipynb", as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in stored.cells if c.cell_type == "code")
        assert (on_disk / "edited.py").exists()
        assert "An edit made in JupyterLab." in (on_disk / "edited.py").read_text()
        assert pair_problems(on_disk / "edited.ipynb") == []
    finally:
        shutil.rmtree(on_disk, ignore_errors=True)
