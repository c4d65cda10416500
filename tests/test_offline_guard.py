"""No network, proven: ``scripts/offline/sitecustomize.py`` (put on PYTHONPATH by run_tests.sh)
refuses and logs every non-loopback connection in any Python process that starts with it, and
the libraries the pipeline uses offline (ultralytics, matplotlib, timm, torch hub) never try.

run_tests.sh runs both test phases (this suite and every notebook under nbval, with their
kernels, torchrun ranks and workers) under the guard and fails on any logged attempt; these
tests show the guard itself works and reaches the processes a run starts."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARD_DIR = ROOT / "scripts" / "offline"


def guarded_env(log: Path, on: bool = True) -> dict[str, str]:
    """This environment with the guard first on PYTHONPATH, switched on or off, logging to ``log``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MSKSEG_OFFLINE_GUARD", "MSKSEG_NET_LOG")}
    env["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["MSKSEG_NET_LOG"] = str(log)
    if on:
        env["MSKSEG_OFFLINE_GUARD"] = "1"
    return env


def run_python(code: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_outbound_connections_are_refused_and_logged_while_loopback_works(tmp_path):
    log = tmp_path / "net.log"
    out = run_python("""
        import errno, socket
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=5)  # loopback: allowed
        client.close(); server.close()
        assert socket.getaddrinfo("localhost", 80)
        a, b = socket.socketpair(); a.sendall(b"x"); assert b.recv(1) == b"x"  # Unix sockets: allowed
        for attempt in (lambda: socket.socket().connect(("192.0.2.1", 80)),
                        lambda: socket.create_connection(("example.org", 443), timeout=5),
                        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"q", ("192.0.2.53", 53)),
                        lambda: socket.socket(socket.AF_INET6).connect_ex(("2001:db8::1", 80, 0, 0))):
            try:
                attempt()
            except OSError as exc:
                assert "offline guard" in str(exc), exc
            else:
                raise SystemExit("an outbound attempt got through")
        print("guarded", getattr(socket, "_mskseg_offline_guard", False))
    """, guarded_env(log))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "guarded True" in out.stdout
    lines = log.read_text().splitlines()
    assert len(lines) == 4, lines
    for target in ("connect ('192.0.2.1', 80)", "resolve 'example.org'", "sendto ('192.0.2.53', 53)",
                   "connect ('2001:db8::1', 80, 0, 0)"):
        assert any(target in line for line in lines), (target, lines)


def test_without_the_switch_nothing_is_patched(tmp_path):
    out = run_python("import socket; print(getattr(socket, '_mskseg_offline_guard', False))",
                     guarded_env(tmp_path / "net.log", on=False))
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr


def test_a_jupyter_kernel_and_a_torchrun_rank_start_guarded(tmp_path):
    """papermill's kernels and torchrun's ranks are new interpreters: they inherit the guard."""
    from jupyter_client.manager import start_new_kernel

    env = guarded_env(tmp_path / "net.log")
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        seen: list[str] = []
        kc.execute_interactive("import socket; print(getattr(socket, '_mskseg_offline_guard', False))",
                               output_hook=lambda m: seen.append(m["content"].get("text", "")), timeout=120)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "True" in "".join(seen), seen
    script = tmp_path / "rank.py"
    script.write_text("import os, socket\nprint('rank', os.environ['RANK'], getattr(socket, '_mskseg_offline_guard', False))\n")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script)], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rank 0 True" in out.stdout and "rank 1 True" in out.stdout, out.stdout
    assert not (tmp_path / "net.log").exists() or not (tmp_path / "net.log").read_text().strip()


@pytest.mark.parametrize("library", ["ultralytics", "matplotlib", "timm", "torch_hub"])
def test_libraries_used_offline_never_reach_out(tmp_path, library):
    code = {
        "ultralytics": """
            from mskseg_lib.settings import configure_environment
            configure_environment()
            from ultralytics import YOLO
            from ultralytics.utils.checks import check_font
            YOLO("yolov8n.yaml")           # built from its YAML, no weights fetched
            print(check_font("Arial.ttf"))  # the project-local copy, not a download
        """,
        "matplotlib": """
            import io
            import matplotlib; matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(); ax.plot([0, 1]); ax.set_title("x"); fig.savefig(io.BytesIO(), format="png")
        """,
        "timm": """
            import timm
            timm.create_model("resnet18", pretrained=False)
        """,
        "torch_hub": """
            import torch.hub
            print(torch.hub.get_dir())
        """,
    }[library]
    log = tmp_path / "net.log"
    out = run_python(code, guarded_env(log))
    assert out.returncode == 0, out.stdout + out.stderr
    attempts = log.read_text().splitlines() if log.exists() else []
    assert attempts == [], attempts
