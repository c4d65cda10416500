"""`mskseg checkpoints fetch/status` against a local file server on 127.0.0.1: the right digest is
kept, a wrong one refused with nothing left behind, an interrupted download leaves nothing, and a
model without a published digest is pinned on first download and verified from then on."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from mskseg_lib import cli
from mskseg_lib.models.checkpoints import PIN_FILE, ChecksumMismatch, read_pins
from mskseg_lib.models.fetch import FetchError, checkpoint_status, fetch_checkpoints
from mskseg_lib.models.settings import ModelSettings

PAYLOAD = b"not a real checkpoint, but bytes with a known digest\n" * 200
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD under any name; ``/cut/<name>`` announces it all and stops halfway."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.startswith("/cut/"):
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server(monkeypatch):
    """A file server on 127.0.0.1 (a free port), stopped after the test (10 s at most)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join(timeout=10)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_right_digest_is_downloaded_and_verified_then_reported_present(tmp_path, server):
    settings = ModelSettings(checkpoints_dir=tmp_path / "weights", sha256_pins={"sam_vit_b": DIGEST})
    [result] = fetch_checkpoints(settings, ["sam_vit_b"], mirror=server, progress=False)
    assert result.status == "downloaded" and result.sha256 == DIGEST and result.digest_source == "profile"
    assert (tmp_path / "weights" / "sam_vit_b_01ec64.pth").read_bytes() == PAYLOAD
    [again] = fetch_checkpoints(settings, ["sam_vit_b"], mirror=server, progress=False)
    assert again.status == "present"
    status = checkpoint_status(settings, ["sam_vit_b", "sam_vit_l"]).set_index("model")
    assert status.loc["sam_vit_b", "verified"] == "yes" and not status.loc["sam_vit_l", "present"]


def test_wrong_digest_is_refused_and_the_download_deleted(tmp_path, server):
    """The registry's published SAM ViT-B digest cannot match the test's bytes."""
    settings = ModelSettings(checkpoints_dir=tmp_path / "weights")
    with pytest.raises(FetchError, match="does not match SHA-256 ec2df627"):
        fetch_checkpoints(settings, ["sam_vit_b"], mirror=server, progress=False)
    assert _leftovers(tmp_path / "weights") == []


def test_interrupted_download_leaves_nothing(tmp_path, server):
    settings = ModelSettings(checkpoints_dir=tmp_path / "weights", sha256_pins={"sam_vit_b": DIGEST})
    with pytest.raises(FetchError, match="download failed, nothing kept"):
        fetch_checkpoints(settings, ["sam_vit_b"], mirror=f"{server}/cut", progress=False)
    assert _leftovers(tmp_path / "weights") == []


def test_no_published_digest_is_pinned_on_first_download_and_verified_after(tmp_path, server):
    """SAM2's files have no digest in the registry: the first download's is recorded in the pin
    file; a file changed afterwards is a mismatch for status, fetch and model loading."""
    weights = tmp_path / "weights"
    settings = ModelSettings(checkpoints_dir=weights)
    [result] = fetch_checkpoints(settings, ["sam2_hiera_tiny"], mirror=server, progress=False)
    assert result.status == "downloaded" and result.digest_source == "pinned on first use"
    assert read_pins(weights) == {"sam2_hiera_tiny": DIGEST} and (weights / PIN_FILE).exists()
    assert checkpoint_status(settings, ["sam2_hiera_tiny"])["digest_source"].tolist() == ["pin file"]
    (weights / "sam2_hiera_tiny.pt").write_bytes(PAYLOAD + b"tampered")
    assert checkpoint_status(settings, ["sam2_hiera_tiny"])["verified"].tolist() == ["MISMATCH"]
    with pytest.raises(ChecksumMismatch):
        fetch_checkpoints(settings, ["sam2_hiera_tiny"], mirror=server, progress=False)


def test_medsam_is_a_manual_step_then_verified_once_placed(tmp_path):
    weights = tmp_path / "weights"
    settings = ModelSettings(checkpoints_dir=weights)
    [result] = fetch_checkpoints(settings, ["medsam_vit_b"], progress=False)
    assert result.status == "manual" and result.path == weights / "medsam_vit_b.pth"
    weights.mkdir(exist_ok=True)
    (weights / "medsam_vit_b.pth").write_bytes(PAYLOAD)
    row = checkpoint_status(settings, ["medsam_vit_b"]).iloc[0]
    assert row["present"] and row["verified"] == "yes" and row["digest_source"] == "pinned on first use"
    assert read_pins(weights)["medsam_vit_b"] == DIGEST


def test_cli_fetch_and_status(tmp_path, server, capsys):
    profile = tmp_path / "p.yaml"
    import yaml

    from mskseg_lib.config import load_profile

    cfg = load_profile("fixture")
    cfg["models"]["checkpoints_dir"] = str(tmp_path / "w")
    profile.write_text(yaml.safe_dump(cfg))
    assert cli.main(["checkpoints", "fetch", "--profile", str(profile), "--models", "sam2_hiera_small",
                     "--mirror", server]) == 0
    assert "sam2_hiera_small: downloaded" in capsys.readouterr().out
    assert cli.main(["checkpoints", "status", "--profile", str(profile), "--models", "sam2_hiera_small",
                     "lite_medsam"]) == 0
    out = capsys.readouterr().out
    assert "sam2_hiera_small" in out and "lite_medsam" in out and "MISMATCH" not in out
