"""The one settings fingerprint: its serialisation is what resumable run folders have stored."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mskseg_lib.provenance import fingerprint


def test_fingerprint_is_the_stored_sha256_of_the_sorted_json():
    payload = {"settings": {"b": 2, "a": [1, 99]}, "path": Path("/x/y"), "version": 2}
    # the digest run folders written before the helper existed hold for this payload
    assert fingerprint(payload) == "bb1df264ecbc61af"
    assert fingerprint(payload, length=20) == "bb1df264ecbc61afccab"
    legacy = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    assert fingerprint(payload, length=64) == legacy
    # key order does not matter, values do
    assert fingerprint({"version": 2, "path": "/x/y", "settings": {"a": [1, 99], "b": 2}}) == "bb1df264ecbc61af"
    assert fingerprint({**payload, "version": 3}) != "bb1df264ecbc61af"
