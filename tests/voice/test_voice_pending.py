"""The store of kept recordings: audio plus a JSON sidecar saying who sent it and where."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.voice import PendingVoice, Route, VoiceNote

ANN = Route(chat_id=100, user_id=100, sender_name="Ann", message_id=7)
GROUP = Route(
    chat_id=-1001234,
    user_id=200,
    sender_name="Bo",
    is_admin=True,
    message_id=9,
    is_group=True,
    forwarded_from="Tom",
)
NOTE = VoiceNote("voice", "AwACAgQ-file", "AgAD7x", 3.0, 5120, "audio/ogg")
AUDIO = b"OggS" + bytes(range(256))


def test_keep_writes_the_audio_and_a_sidecar_with_the_route(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path / "voice")
    at = datetime(2024, 3, 3, 13, 5, tzinfo=UTC)
    path = pending.keep(NOTE, AUDIO, GROUP, now=at)

    assert path == tmp_path / "voice" / "chat-1001234-voice-AgAD7x.ogg"
    assert path.read_bytes() == AUDIO
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar == {
        "version": 1,
        "chat_id": -1001234,
        "user_id": 200,
        "sender_name": "Bo",
        "is_admin": True,
        "message_id": 9,
        "is_group": True,
        "forwarded_from": "Tom",
        "kind": "voice",
        "file_id": "AwACAgQ-file",
        "file_unique_id": "AgAD7x",
        "duration_s": 3.0,
        "size": 5120,
        "mime_type": "audio/ogg",
        "kept_at": "2024-03-03T13:05:00+00:00",
    }
    [kept] = pending.list()
    assert (kept.path, kept.route, kept.note, kept.kept_at, kept.routed) == (
        path,
        GROUP,
        NOTE,
        at,
        True,
    )


def test_keep_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path)
    # What a crash in the middle of a write leaves: a temporary file. It is never listed.
    (tmp_path / "chat100-voice-CRASHED.ogg.part").write_bytes(AUDIO[:10])
    assert pending.list() == []
    first = pending.keep(NOTE, b"old bytes", ANN)
    second = pending.keep(NOTE, AUDIO, ANN)
    assert first == second and second is not None and second.read_bytes() == AUDIO
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chat100-voice-AgAD7x.ogg",
        "chat100-voice-AgAD7x.ogg.json",
        "chat100-voice-CRASHED.ogg.part",
    ]
    assert [r.path for r in pending.list()] == [second]


def test_keep_returns_none_when_the_disk_refuses(tmp_path: Path) -> None:
    blocker = tmp_path / "voice"
    blocker.write_text("a file where the directory should be")
    assert PendingVoice(blocker).keep(NOTE, AUDIO, ANN) is None
    assert PendingVoice(blocker / "sub").keep(NOTE, AUDIO, ANN) is None


def test_names_stay_inside_the_directory(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path / "voice")
    sneaky = VoiceNote("audio", "../../etc/passwd", None, mime_type="audio/mpeg")
    path = pending.keep(sneaky, AUDIO, Route(chat_id=5, user_id=5))
    assert path is not None and path.parent == tmp_path / "voice"
    assert path.name == "chat5-audio-______etc_passwd.mp3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice"]


def test_list_is_oldest_first(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path)
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    for minutes, unique in [(30, "b"), (0, "c"), (90, "a")]:
        pending.keep(
            VoiceNote("voice", unique, unique), AUDIO, ANN, now=start + timedelta(minutes=minutes)
        )
    listed = pending.list()
    assert [r.note.file_id for r in listed if r.note] == ["c", "b", "a"]
    assert [r.kept_at - start for r in listed] == [
        timedelta(0),
        timedelta(minutes=30),
        timedelta(minutes=90),
    ]


def test_recordings_without_a_readable_sidecar_are_unrouted_and_left_alone(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path)
    old = tmp_path / "voice-AgOLD.ogg"  # kept by an older version: no sidecar
    old.write_bytes(AUDIO)
    os.utime(old, (1_700_000_000, 1_700_000_000))
    broken = pending.keep(VoiceNote("voice", "x", "BROKEN"), AUDIO, ANN)
    assert broken is not None
    broken.with_name(broken.name + ".json").write_text("{not json")
    routed = pending.keep(NOTE, AUDIO, ANN)

    listed = pending.list()
    assert [r.path for r in listed] == [old, broken, routed]
    assert [r.routed for r in listed] == [False, False, True]
    assert listed[0].kept_at == datetime.fromtimestamp(1_700_000_000, UTC)  # the file's time
    assert listed[1].route is None and listed[1].note is None
    assert old.read_bytes() == AUDIO and broken.read_bytes() == AUDIO  # listing never deletes


def test_remove_deletes_the_audio_and_its_sidecar(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path)
    pending.keep(NOTE, AUDIO, ANN)
    pending.keep(VoiceNote("voice", "y", "other"), AUDIO)  # unrouted: no sidecar
    routed, unrouted = sorted(pending.list(), key=lambda r: r.routed, reverse=True)
    pending.remove(routed)
    assert [r.path for r in pending.list()] == [unrouted.path]
    pending.remove(unrouted)
    pending.remove(unrouted)  # already gone: nothing to do
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_kept_before_forwards_were_named_reads_as_not_forwarded(tmp_path: Path) -> None:
    pending = PendingVoice(tmp_path / "voice")
    path = pending.keep(NOTE, AUDIO, GROUP)
    sidecar = path.with_name(path.name + ".json")
    raw = json.loads(sidecar.read_text())
    del raw["forwarded_from"]
    sidecar.write_text(json.dumps(raw))
    [kept] = pending.list()
    assert kept.route is not None and kept.route.forwarded_from == ""
    assert kept.route.sender_name == "Bo"
