"""A fake Telegram Bot API server on 127.0.0.1 for what the emulator lacks (``sendDocument``
with a multipart upload, ``getChatMember``): answers getMe, sendDocument (keeping each upload),
getChatMember (from ``statuses``, counting the calls) and sendMessage (kept in ``sent``; with
``floods`` set, that many calls first get Telegram's 429 flood-control answer). A chat in
``forbidden`` gets Telegram's 403 to a sendDocument or sendMessage, as a person who never started
the bot (or blocked it) does."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Upload:
    chat_id: int
    filename: str
    data: bytes
    caption: str


class FakeBotAPI:
    def __init__(self) -> None:
        self.uploads: list[Upload] = []
        self.statuses: dict[tuple[int, int], str] = {}  # (chat, user) -> "administrator", ...
        self.member_calls = 0
        self.member_error: str | None = None  # set: getChatMember answers 400 with this
        self.forbidden: set[int] = set()  # chats that answer 403 to sendDocument/sendMessage
        self.sent: list[tuple[int, str]] = []  # sendMessage: (chat id, text) delivered
        self.send_calls = 0
        self.floods = 0  # the next this many sendMessage calls answer 429, with:
        self.flood_retry_after: float = 0.05  # seconds (Telegram's are whole; PTB takes these)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                method = self.path.rsplit("/", 1)[-1]
                result: Any
                if method == "getMe":
                    result = {"id": 666, "is_bot": True, "first_name": "F", "username": "FBot"}
                elif (
                    method in ("sendDocument", "sendMessage")
                    and api._chat_of(self.headers["Content-Type"], body) in api.forbidden
                ):
                    description = "Forbidden: bot can't initiate conversation with a user"
                    self._answer(403, {"ok": False, "error_code": 403, "description": description})
                    return
                elif method == "sendDocument":
                    result = api._document(self.headers["Content-Type"], body)
                elif method == "sendMessage" and api.floods > 0:
                    api.floods -= 1
                    api.send_calls += 1
                    self._answer(
                        429,
                        {
                            "ok": False,
                            "error_code": 429,
                            "description": "Too Many Requests: retry after 1",
                            "parameters": {"retry_after": api.flood_retry_after},
                        },
                    )
                    return
                elif method == "sendMessage":
                    result = api._message(self.headers["Content-Type"], body)
                elif method == "getChatMember" and api.member_error is not None:
                    api.member_calls += 1
                    self._answer(
                        400, {"ok": False, "error_code": 400, "description": api.member_error}
                    )
                    return
                elif method == "getChatMember":
                    result = api._member(self.headers["Content-Type"], body)
                else:
                    self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                self._answer(200, {"ok": True, "result": result})

            def _answer(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bot"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _chat_of(content_type: str, body: bytes) -> int | None:
        """The chat_id a call names, whatever its encoding (multipart, JSON, form)."""
        from urllib.parse import parse_qs

        if content_type.startswith("multipart/"):
            form = BytesParser(policy=default).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in form.iter_parts():
                if part.get_param("name", header="content-disposition") == "chat_id":
                    return int((part.get_payload(decode=True) or b"").decode())
            return None
        if content_type.startswith("application/json"):
            value = json.loads(body).get("chat_id")
        else:
            value = (parse_qs(body.decode()).get("chat_id") or [None])[0]
        return None if value is None else int(value)

    def _document(self, content_type: str, body: bytes) -> dict[str, Any]:
        form = BytesParser(policy=default).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        upload = None
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if part.get_filename():
                upload = (part.get_filename(), data)
            else:
                fields[str(name)] = data.decode()
        assert upload is not None, f"no file in the upload: {fields}"
        chat_id = int(fields["chat_id"])
        self.uploads.append(Upload(chat_id, upload[0], upload[1], fields.get("caption", "")))
        return {
            "message_id": len(self.uploads),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "document": {
                "file_id": f"f{len(self.uploads)}",
                "file_unique_id": "u",
                "file_name": upload[0],
            },
        }

    def _message(self, content_type: str, body: bytes) -> dict[str, Any]:
        from urllib.parse import parse_qs

        if content_type.startswith("application/json"):
            params = json.loads(body)
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.send_calls += 1
        chat_id = int(params["chat_id"])
        self.sent.append((chat_id, str(params["text"])))
        return {
            "message_id": len(self.sent),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "text": str(params["text"]),
        }

    def _member(self, content_type: str, body: bytes) -> dict[str, Any]:
        from urllib.parse import parse_qs

        if content_type.startswith("application/json"):
            params = json.loads(body)
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.member_calls += 1
        chat, user = int(params["chat_id"]), int(params["user_id"])
        status = self.statuses.get((chat, user), "member")
        member: dict[str, Any] = {
            "status": status,
            "user": {"id": user, "is_bot": False, "first_name": "U"},
        }
        if status == "administrator":
            member |= {
                "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False,
                "can_change_info": True, "can_invite_users": True, "can_post_stories": False,
                "can_edit_stories": False, "can_delete_stories": False,
            }  # fmt: skip
        if status == "creator":
            member["is_anonymous"] = False
        return member

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
