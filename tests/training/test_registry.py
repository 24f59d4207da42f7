"""The adapter registry: strict names, no way out of the adapters directory, checksums, promotion."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agents.training.errors import RegistryError
from agents.training.registry import AdapterRegistry, check_slug


def adapter(tmp_path: Path, content: bytes = b"weights") -> Path:
    src = tmp_path / f"src-{len(list(tmp_path.iterdir()))}"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(content)
    (src / "adapter_config.json").write_text("{}")
    return src


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        "/etc",
        "a/b",
        "a\\b",
        "",
        "-lead",
        "UPPER",
        "x" * 41,
        "pirate\n",
        "pir\u0430te",  # Cyrillic а
        "ｐirate",  # fullwidth p
        "pirate\u200b",
    ],  # zero-width space
)
def test_hostile_names_are_refused(tmp_path: Path, name: str) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    with pytest.raises(RegistryError, match="not a valid archetype name"):
        registry.add(name, adapter(tmp_path))
    assert list((tmp_path / "adapters").iterdir()) == []


def test_good_names_pass() -> None:
    assert check_slug("pirate-captain-2") == "pirate-captain-2"


def test_versions_checksums_promote_and_rollback(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    v1 = registry.add("pirate", adapter(tmp_path, b"one"), {"base_model": "tiny"})
    v2 = registry.add("pirate", adapter(tmp_path, b"two"))
    assert (v1.version, v2.version) == ("v1", "v2")
    assert v1.path == (tmp_path / "adapters" / "pirate" / "v1").resolve()
    assert v1.metadata["files"]["adapter_model.safetensors"] == hashlib.sha256(b"one").hexdigest()
    assert registry.promoted("pirate") is None
    registry.promote("pirate", "v1")
    registry.promote("pirate", "v2")
    assert registry.promoted("pirate").version == "v2"
    assert [v.promoted for v in registry.versions("pirate")] == [False, True]
    assert registry.rollback("pirate").version == "v1"
    assert registry.rollback("pirate") is None  # back to the base model
    with pytest.raises(RegistryError, match="no version of pirate is promoted"):
        registry.rollback("pirate")
    registry.set_evaluation("pirate", "v2", {"heldout_loss": 1.0})
    assert registry.get("pirate", "v2").evaluation == {"heldout_loss": 1.0}


def test_altered_files_are_detected_and_not_promoted(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    v1 = registry.add("pirate", adapter(tmp_path))
    (v1.path / "adapter_model.safetensors").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="missing or altered"):
        registry.promote("pirate", "v1")


def test_symlinks_cannot_lead_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "adapters"
    root.mkdir()
    os.symlink(outside, root / "evil")
    registry = AdapterRegistry(root)
    with pytest.raises(RegistryError, match="outside the adapters directory"):
        registry.add("evil", adapter(tmp_path))
    assert list(outside.iterdir()) == []
    registry.add("pirate", adapter(tmp_path))
    os.symlink(outside, root / "pirate" / "v7")
    with pytest.raises(RegistryError, match="outside"):
        registry.get("pirate", "v7")
    src = adapter(tmp_path, b"linky")
    os.symlink("/etc/passwd", src / "stolen.json")
    with pytest.raises(RegistryError, match="symlink"):
        registry.add("pirate", src)
    with pytest.raises(RegistryError, match="not an adapter version"):
        registry.get("pirate", "../../outside")


def test_a_failed_copy_leaves_no_half_written_version(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    src = tmp_path / "nosafetensors"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    with pytest.raises(RegistryError, match="no .safetensors"):
        registry.add("pirate", src)
    assert registry.versions("pirate") == []
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "adapters").rglob("*"))


def test_adding_the_same_jobs_adapter_again_returns_its_version(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    source = adapter(tmp_path, b"one")
    first = registry.add("pirate", source, {"job_id": 7})
    again = registry.add("pirate", source, {"job_id": 7})  # a rerun after a crash
    assert again.version == first.version == "v1"
    assert [v.version for v in registry.versions("pirate")] == ["v1"]
    # other files from the same job, the same files from another job, or no job: new versions
    assert registry.add("pirate", adapter(tmp_path, b"two"), {"job_id": 7}).version == "v2"
    assert registry.add("pirate", source, {"job_id": 8}).version == "v3"
    assert registry.add("pirate", source).version == "v4"
