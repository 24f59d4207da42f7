"""Archives Familiar did not write: each is refused with the name of what is wrong, and nothing
is written outside the folder it is checked in."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from jobs.backup import BackupSources, create_backup
from jobs.errors import VerifyError
from jobs.restore import restore_archive
from jobs.verify import verify_archive


def members_of(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def manifest_for(files: dict[str, bytes], **extra: object) -> bytes:
    listed = [
        {"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n, d in files.items()
    ]
    return json.dumps({"format": 1, "files": listed, **extra}).encode()


@pytest.fixture
def good(data_dir: Path, tmp_path: Path) -> dict[str, bytes]:
    archive = create_backup(BackupSources.of(data_dir), tmp_path / "b", app_version="t").path
    files = members_of(archive)
    files.pop("manifest.json")
    return files


def test_a_member_that_climbs_out_is_refused_and_written_nowhere(
    good: dict[str, bytes], tmp_path: Path
) -> None:
    files = {**good, "../../escaped.txt": b"written outside"}
    bad = write_tar(
        tmp_path / "climb.tar.gz",
        [*files.items(), ("manifest.json", manifest_for(files))],
    )
    with pytest.raises(VerifyError, match=r"'\.\./\.\./escaped\.txt' points outside the archive"):
        verify_archive(bad)
    assert not list(tmp_path.parent.rglob("escaped.txt"))


def test_a_symbolic_link_member_is_refused(good: dict[str, bytes], tmp_path: Path) -> None:
    link = tarfile.TarInfo("index/vectors.faiss")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = write_tar(tmp_path / "link.tar.gz", [link, ("manifest.json", manifest_for(good))])
    with pytest.raises(VerifyError, match="index/vectors.faiss in link.tar.gz is not a regular"):
        verify_archive(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no manifest", "has no manifest.json"),
        ("manifest not json", "manifest.json in .* cannot be read"),
        ("newer format", "written by a newer Familiar \\(format 99\\)"),
        ("listed but missing", "index/meta.json is listed in the manifest but missing"),
        ("not listed", "extra.bin in .* is not in the manifest"),
        ("no database", "holds no database"),
    ],
)
def test_an_archive_that_does_not_match_its_manifest_is_named(
    good: dict[str, bytes], tmp_path: Path, change: str, message: str
) -> None:
    files, listed, manifest = dict(good), dict(good), None
    if change == "no manifest":
        manifest = b""
    elif change == "manifest not json":
        manifest = b"{not json"
    elif change == "newer format":
        manifest = json.dumps({"format": 99, "files": []}).encode()
    elif change == "listed but missing":
        del files["index/meta.json"]
    elif change == "not listed":
        files["extra.bin"] = b"unlisted"
    elif change == "no database":
        del files["familiar.db"]
        del listed["familiar.db"]
    members: list[tarfile.TarInfo | tuple[str, bytes]] = list(files.items())
    if manifest != b"":
        members.append(("manifest.json", manifest or manifest_for(listed)))
    bad = write_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(VerifyError, match=message):
        verify_archive(bad)


def test_restore_of_a_hostile_archive_changes_nothing(
    good: dict[str, bytes], data_dir: Path, tmp_path: Path
) -> None:
    files = {**good, "/tmp/absolute.txt": b"x"}
    bad = write_tar(
        tmp_path / "abs.tar.gz", [*files.items(), ("manifest.json", manifest_for(files))]
    )
    before = sorted(p.relative_to(data_dir.parent).as_posix() for p in data_dir.parent.rglob("*"))
    with pytest.raises(VerifyError, match="points outside the archive"):
        restore_archive(bad, data_dir)
    after = sorted(p.relative_to(data_dir.parent).as_posix() for p in data_dir.parent.rglob("*"))
    assert [p for p in after if p != "data/familiar.lock"] == before  # the lock it held aside
