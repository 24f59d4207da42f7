"""An export as files a chat can carry: small JSON as it is, large JSON zipped, and a zip still
over the channel's limit cut into numbered parts that join back into the same zip."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from bot.core.export_files import export_files


def unzip(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [name]
        return archive.read(name)


def test_a_small_export_is_plain_json() -> None:
    payload = json.dumps({"memories": ["a", "b"]}).encode()
    (only,) = export_files("memory-5", payload, "Your memory in this chat")
    assert (only.filename, only.data, only.caption) == (
        "memory-5.json",
        payload,
        "Your memory in this chat.",
    )


def test_a_large_export_is_one_zip_holding_the_json() -> None:
    payload = json.dumps({"memories": ["the same line again"] * 5000}).encode()
    (only,) = export_files("memory-5", payload, "Your memory", zip_over=1024)
    assert only.filename == "memory-5.zip" and len(only.data) < len(payload)
    assert "zipped" in only.caption
    assert unzip(only.data, "memory-5.json") == payload


def test_a_zip_over_the_limit_is_cut_into_parts_that_join_back() -> None:
    payload = os.urandom(10_000)  # does not compress: the zip stays over the part size
    parts = export_files("memory-5", payload, "Your memory", zip_over=1024, part_bytes=4096)
    assert [p.filename for p in parts] == [f"memory-5.zip.{n:03d}" for n in range(1, 4)]
    assert all(len(p.data) <= 4096 for p in parts)
    assert parts[0].caption.startswith("Your memory: part 1 of 3 of a zip.")
    assert "cat memory-5.zip.* > memory-5.zip" in parts[-1].caption
    assert unzip(b"".join(p.data for p in parts), "memory-5.json") == payload


def test_a_part_size_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="part_bytes must be positive"):
        export_files("x", b"{}", "Export", part_bytes=0)
