"""Recognition with the engines: real synthesised speech through pocketsphinx, and clear errors."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from agents.voice import EngineUnavailable, Transcriber, VoiceSettings, build_transcriber
from agents.voice.pocketsphinx_engine import PocketsphinxTranscriber
from agents.voice.sphinx_worker import PAD_S, chunks
from tests.voice.conftest import Synth, to_opus, word_recall

# Common words that espeak-ng's en-us voice says clearly enough for pocketsphinx's model.
SENTENCE = "please call my mother tomorrow morning"


def test_pocketsphinx_hears_most_words_of_a_voice_note(synth: Synth, sphinx: Transcriber) -> None:
    samples, rate = synth(SENTENCE)
    transcript = sphinx.transcribe_sync(to_opus(samples, rate))
    assert word_recall(SENTENCE, transcript.text) >= 0.6, transcript.text
    assert transcript.engine == "pocketsphinx" and transcript.language == "en"
    assert transcript.duration_s == pytest.approx(len(samples) / rate, abs=0.05)
    assert not transcript.heard_nothing


def test_silence_is_heard_as_nothing(sphinx: Transcriber) -> None:
    quiet = np.zeros(48_000 * 3, dtype=np.float32)
    transcript = sphinx.transcribe_sync(to_opus(quiet, 48_000))
    assert transcript.heard_nothing and transcript.text == ""
    assert transcript.duration_s == pytest.approx(3.0, abs=0.05)


def test_long_recording_is_decoded_in_chunks(synth: Synth) -> None:
    sentences = ["please call my mother tomorrow morning", "i want to buy some milk and bread"]
    pause = np.zeros(22_050, dtype=np.float32)
    parts = [synth(s)[0] for s in sentences]
    rate = synth(sentences[0])[1]
    recording = np.concatenate([parts[0], pause, parts[1], pause, parts[0]])
    transcriber = PocketsphinxTranscriber(VoiceSettings())
    transcriber.chunk_s = 4.0  # each sentence is about 2.5 s: three chunks
    try:
        transcript = transcriber.transcribe_sync(to_opus(recording, rate))
    finally:
        transcriber.close()
    expected = " ".join([sentences[0], sentences[1], sentences[0]])
    assert word_recall(expected, transcript.text) >= 0.6, transcript.text


def test_chunks_group_regions_and_cut_long_ones() -> None:
    regions = [(1.0, 3.0), (3.5, 5.0), (9.0, 10.0), (12.0, 30.0)]
    got = chunks(regions, total_s=31.0, chunk_s=8.0)
    assert got == [
        (1.0 - PAD_S, 5.0 + PAD_S),  # two close regions share a chunk
        (9.0 - PAD_S, 10.0 + PAD_S),  # 12..20 would make it longer than 8 s
        (12.0 - PAD_S, 20.0 + PAD_S),
        (20.0 - PAD_S, 28.0 + PAD_S),
        (28.0 - PAD_S, 30.0 + PAD_S),
    ]
    assert chunks([(0.1, 1.0)], total_s=1.2, chunk_s=8.0) == [(0.0, 1.2)]  # padding stays inside
    assert chunks([], total_s=3.0, chunk_s=8.0) == []


def test_transcribing_leaves_the_event_loop_free(synth: Synth, sphinx: Transcriber) -> None:
    samples, rate = synth(SENTENCE)
    note = to_opus(np.tile(samples, 2), rate)  # about 5 s of speech: over a second of decoding

    async def main() -> tuple[float, float]:
        gaps: list[float] = []
        task = asyncio.create_task(sphinx.transcribe(note))
        last = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        return max(gaps), (await task).compute_s

    longest_gap, compute_s = asyncio.run(main())
    assert compute_s > 0.5  # long enough that a blocked loop would show
    assert longest_gap < 0.25, f"the event loop stalled for {longest_gap:.2f} s"


def test_pocketsphinx_refuses_other_languages_naming_the_setting() -> None:
    transcriber = build_transcriber(VoiceSettings(language="de"))
    with pytest.raises(EngineUnavailable) as caught:
        transcriber.model()
    assert "voice.language" in str(caught.value) and "FAMILIAR_VOICE__LANGUAGE" in caught.value.fix


def test_whisper_without_a_model_path_names_the_setting() -> None:
    with pytest.raises(EngineUnavailable) as caught:
        build_transcriber(VoiceSettings(engine="faster-whisper")).model()
    assert (
        "voice.model_path" in str(caught.value) and "FAMILIAR_VOICE__MODEL_PATH" in caught.value.fix
    )


def test_whisper_with_an_empty_model_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="holds no model.bin"):
        build_transcriber(VoiceSettings(engine="faster-whisper", model_path=tmp_path)).model()


def test_whisper_not_installed_names_the_package(tmp_path: Path) -> None:
    if importlib.util.find_spec("faster_whisper") is not None:
        pytest.skip("faster-whisper is installed here; its missing-package message cannot be shown")
    (tmp_path / "model.bin").write_bytes(b"weights")
    with pytest.raises(EngineUnavailable) as caught:
        build_transcriber(VoiceSettings(engine="faster-whisper", model_path=tmp_path)).model()
    assert "faster-whisper" in str(caught.value) and "voice-whisper" in caught.value.fix


def test_engine_none_refuses_and_the_audio_is_still_checked_first(synth: Synth) -> None:
    transcriber = build_transcriber(VoiceSettings(engine="none"))
    samples, rate = synth("hello")
    with pytest.raises(EngineUnavailable, match="voice.engine = none"):
        transcriber.transcribe_sync(to_opus(samples, rate))


def test_a_killed_worker_is_replaced(synth: Synth) -> None:
    transcriber = PocketsphinxTranscriber(VoiceSettings())
    note = to_opus(*synth(SENTENCE))
    try:
        worker = transcriber.model()
        worker.kill()
        worker.wait()
        with pytest.raises(Exception, match="stopped unexpectedly"):
            transcriber.transcribe_sync(note)
        assert word_recall(SENTENCE, transcriber.transcribe_sync(note).text) >= 0.6
        assert transcriber.model() is not worker
    finally:
        transcriber.close()
