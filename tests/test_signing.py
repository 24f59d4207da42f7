"""Signed button data: only a press of a button this daemon sent, in the chat it was sent to,
verifies. Forged, altered, copied-to-another-chat and malformed data all read as None.
"""

from __future__ import annotations

import pytest

from bot.core.signing import MAX_DATA_BYTES, ButtonSigner

KEY = b"k" * 32
CHAT = -100200300


def split(data: str) -> tuple[str, str]:
    prefix, _, signed = data.partition(":")
    return prefix, signed


def test_a_genuine_press_verifies_to_its_payload() -> None:
    signer = ButtonSigner(KEY)
    prefix, signed = split(signer.data("rv", "accept-17", CHAT))
    assert prefix == "rv"
    assert signer.verify("rv", signed, CHAT) == "accept-17"


def test_the_longest_payload_fits_telegrams_callback_limit() -> None:
    data = ButtonSigner(KEY).data("ad", "x" * 40, -1001234567890123)  # prefixes in use: 2 chars
    assert len(data.encode()) <= MAX_DATA_BYTES


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: s.replace("accept", "reject"), id="payload changed"),
        pytest.param(lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"), id="mac changed"),
        pytest.param(lambda s: s.rpartition(".")[0], id="mac dropped"),
        pytest.param(lambda s: "accept-17.", id="empty mac"),
        pytest.param(lambda s: "../../etc." + s.rpartition(".")[2], id="payload not allowed"),
        pytest.param(lambda s: "", id="empty"),
    ],
)
def test_altered_data_does_not_verify(tamper) -> None:  # type: ignore[no-untyped-def]
    signer = ButtonSigner(KEY)
    _, signed = split(signer.data("rv", "accept-17", CHAT))
    assert signer.verify("rv", tamper(signed), CHAT) is None


def test_a_button_copied_to_another_chat_or_command_does_not_verify() -> None:
    signer = ButtonSigner(KEY)
    _, signed = split(signer.data("rv", "accept-17", CHAT))
    assert signer.verify("rv", signed, CHAT + 1) is None  # forwarded elsewhere
    assert signer.verify("todo", signed, CHAT) is None  # replayed to another command


def test_another_daemons_key_does_not_verify() -> None:
    _, signed = split(ButtonSigner(b"other key").data("rv", "accept-17", CHAT))
    assert ButtonSigner(KEY).verify("rv", signed, CHAT) is None


@pytest.mark.parametrize("payload", ["", "a" * 41, "has space", "dot.ted", "colon:x", "é"])
def test_a_payload_outside_the_safe_alphabet_is_refused_when_signing(payload: str) -> None:
    with pytest.raises(ValueError, match="must be 1-40 of"):
        ButtonSigner(KEY).data("rv", payload, CHAT)
