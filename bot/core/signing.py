"""Signed button data: ``<prefix>:<payload>.<mac>``, bound to the chat the button was sent to.

A button's data comes back from the client, so it is checked before anything is done with it:
a forged, malformed or foreign (copied to another chat) press verifies as None.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

MAX_DATA_BYTES = 64  # Telegram's callback_data limit
_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class ButtonSigner:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, prefix: str, payload: str, chat_id: int) -> str:
        digest = hmac.new(
            self.key, f"{prefix}|{payload}|{chat_id}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest[:8]).decode().rstrip("=")

    def data(self, prefix: str, payload: str, chat_id: int) -> str:
        if not _PAYLOAD.match(payload):
            raise ValueError(f"button payload {payload!r} must be 1-40 of [A-Za-z0-9_-]")
        data = f"{prefix}:{payload}.{self._mac(prefix, payload, chat_id)}"
        assert len(data.encode()) <= MAX_DATA_BYTES
        return data

    def verify(self, prefix: str, signed_payload: str, chat_id: int) -> str | None:
        """The payload when the signature checks out for this chat, else None."""
        payload, dot, mac = signed_payload.rpartition(".")
        if not dot or not _PAYLOAD.match(payload):
            return None
        if not hmac.compare_digest(mac, self._mac(prefix, payload, chat_id)):
            return None
        return payload
