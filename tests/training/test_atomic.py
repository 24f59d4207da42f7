"""Atomic writes of adapters, checkpoints and registry files: a failure part-way leaves the old
content whole and no temporary file or folder behind; success replaces it completely.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.training.atomic import atomic_directory, atomic_write_bytes, atomic_write_text


class Crash(Exception):
    pass


def adapter(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "adapter_model.safetensors").write_bytes(weights)
    (root / "adapter_config.json").write_text('{"r": 8}')
    return root


def test_a_directory_written_in_full_replaces_the_old_one(tmp_path: Path) -> None:
    final = adapter(tmp_path / "adapters" / "style", b"old weights")
    with atomic_directory(final, replace=True) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "adapter_model.safetensors").write_bytes(b"new weights")
    assert [p.name for p in final.iterdir()] == ["adapter_model.safetensors"]
    assert (final / "adapter_model.safetensors").read_bytes() == b"new weights"
    assert sorted(p.name for p in final.parent.iterdir()) == ["style"]  # no .tmp-/.old- left


def test_a_crash_while_writing_keeps_the_old_directory_whole(tmp_path: Path) -> None:
    final = adapter(tmp_path / "adapters" / "style", b"old weights")
    with pytest.raises(Crash), atomic_directory(final, replace=True) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"half of the new")
        raise Crash
    assert (final / "adapter_model.safetensors").read_bytes() == b"old weights"
    assert (final / "adapter_config.json").exists()
    assert sorted(p.name for p in final.parent.iterdir()) == ["style"]


def test_without_replace_an_existing_directory_is_refused_untouched(tmp_path: Path) -> None:
    final = adapter(tmp_path / "style", b"keep me")
    with pytest.raises(FileExistsError), atomic_directory(final):
        raise AssertionError("the block must not run")
    assert (final / "adapter_model.safetensors").read_bytes() == b"keep me"


def test_a_new_directory_gets_its_parents(tmp_path: Path) -> None:
    final = tmp_path / "a" / "b" / "checkpoint-10"
    with atomic_directory(final) as tmp:
        (tmp / "state.pt").write_bytes(b"step 10")
    assert (final / "state.pt").read_bytes() == b"step 10"


def test_a_file_write_that_fails_keeps_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    atomic_write_text(target, '{"adapters": ["style-v1"]}')
    assert target.read_text() == '{"adapters": ["style-v1"]}'

    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]

    assert target.read_text() == '{"adapters": ["style-v1"]}'
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]
