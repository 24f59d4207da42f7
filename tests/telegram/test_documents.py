"""Documents and links in the Telegram channel: checked, downloaded, stored, answered in view.

The handler tests run the real ``UpdateHandler`` with a PTB ``Bot`` pointed at the emulator
(files served through its ``/putFile`` hook, then ``getFile`` and the download, as Telegram
does), real memory on SQLite in tmp_path, and the recording answerer of the handler rig, which
shows what reached the assistant (the caption, and the document as ``attachment``). The
end-to-end test runs the daemon with the real anthropic provider against the stub model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram import Bot, Update

from bot.core.documents import DocumentDesk, sent_link
from bot.telegram.documents import DocumentReader
from bot.telegram.voice import file_base_url
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.fetch import FetchLimits
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from tests.memory.docfiles import PAGE3_SENTENCE, make_pdf
from tests.memory.webserver import ARTICLE_SENTENCE, web_server
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.conftest import Emulator
from tests.telegram.helpers import ALLOWED, Rig, build_rig, message

STRANGER = 4343


def document_message(
    user_id: int,
    file_id: str,
    name: str,
    size: int,
    caption: str | None = None,
    update_id: int = 1,
    mime: str = "application/pdf",
) -> dict:
    payload = message(user_id, "", update_id=update_id)
    msg = payload["message"]
    del msg["text"]
    msg["document"] = {
        "file_id": file_id,
        "file_unique_id": f"u{file_id}",
        "file_name": name,
        "mime_type": mime,
        "file_size": size,
    }
    if caption is not None:
        msg["caption"] = caption
    return payload


class DocRig:
    def __init__(self, tmp_path: Path, emulator: Emulator, token: str, **settings: object) -> None:
        self.emulator, self.token = emulator, token
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.bot = Bot(
            token, base_url=emulator.base_url, base_file_url=file_base_url(emulator.base_url)
        )
        self.rig: Rig = build_rig(tmp_path)
        self.db = Database.open(tmp_path / "memory.db", [memory_migrations])
        self.memory = Memory(self.db, HashingEmbedder(), MemorySettings(**settings), tmp_path / "i")
        self.memory.warm_sync()
        self.desk = DocumentDesk(
            self.memory, self.rig.assistant, FetchLimits(allow_private=True), progress_every_s=0
        )
        self.desk.register()
        self.rig.handler.documents = DocumentReader(self.bot, self.desk)

    def run(self, *payloads: dict) -> None:
        async def go() -> None:
            async with self.bot:
                for payload in payloads:
                    await self.rig.handler.handle(Update.de_json(payload, self.bot))
            await self.memory.stop()

        asyncio.run(go())

    def put(self, file_id: str, data: bytes) -> int:
        self.emulator.put_file(self.token, file_id, data)
        return len(data)

    def fetched(self) -> list[str]:
        return [r.get("fileId") or r.get("path") for r in self.emulator.file_requests(self.token)]

    def documents(self) -> list[tuple[str, str]]:
        with self.db.read() as conn:
            return conn.execute(
                "SELECT ref, text FROM memories WHERE kind = 'document' ORDER BY id"
            ).fetchall()


@pytest.fixture
def make_rig(
    tmp_path: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> Iterator[object]:
    rigs: list[DocRig] = []

    def make(**settings: object) -> DocRig:
        token = f"8{abs(hash(request.node.name)) % 10**8}{len(rigs)}:docs"
        rig = DocRig(tmp_path / str(len(rigs)), emulator, token, **settings)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.db.close()


def test_a_pdf_with_a_caption_is_stored_and_answered_with_it_in_view(
    make_rig, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_pdf(tmp_path / "lease.pdf").read_bytes()
    rig.run(document_message(ALLOWED, "d1", "lease.pdf", rig.put("d1", data), "Can I keep a cat?"))

    [seen] = rig.rig.answerer.seen
    assert seen.text == "Can I keep a cat?"
    assert PAGE3_SENTENCE in seen.attachment and "[page 3]" in seen.attachment
    assert seen.meta["document"] == "lease.pdf"
    refs = [ref for ref, _ in rig.documents()]
    assert refs == [f"lease.pdf#page={n}" for n in range(1, 6)]
    status = rig.rig.transport.shown(0).text
    assert status == "📄 lease.pdf: 5 pages, 5 parts kept in memory."
    assert rig.fetched()[0] == "d1"


def test_the_same_document_twice_is_kept_once(make_rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_pdf(tmp_path / "lease.pdf").read_bytes()
    size = rig.put("d1", data)
    rig.run(
        document_message(ALLOWED, "d1", "lease.pdf", size, "pets?", update_id=1),
        document_message(ALLOWED, "d1", "lease.pdf", size, "rent?", update_id=2),
    )
    assert len(rig.documents()) == 5
    statuses = [r.text for _, r in rig.rig.transport.sent if r.text.startswith("📄")]
    assert rig.rig.transport.shown(2).text == "📄 lease.pdf: 5 pages, 5 parts already in memory."
    assert len(statuses) == 2
    assert [m.text for m in rig.rig.answerer.seen] == ["pets?", "rent?"]
    assert PAGE3_SENTENCE in rig.rig.answerer.seen[1].attachment


def test_no_caption_asks_for_a_summary_and_invites_questions(make_rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_pdf(tmp_path / "lease.pdf").read_bytes()
    rig.run(document_message(ALLOWED, "d2", "lease.pdf", rig.put("d2", data)))
    [seen] = rig.rig.answerer.seen
    assert seen.text == "📄 lease.pdf"
    assert "short summary" in seen.attachment
    assert rig.rig.transport.shown(0).text.endswith("Ask me anything about it.")


def test_a_large_document_shows_progress_and_sends_the_relevant_pages(
    make_rig, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(document_inline_chars=500, embedding_batch_size=2, document_context_chunks=2)
    data = make_pdf(tmp_path / "big.pdf", pages=12).read_bytes()
    rig.run(document_message(ALLOWED, "d3", "big.pdf", rig.put("d3", data), "pets cat dogs"))
    edits = [r.text for _, r in rig.rig.transport.edits]
    assert any(e.startswith("📄 Reading big.pdf: ") and "/12 chunks…" in e for e in edits), edits
    assert edits[-1] == "📄 big.pdf: 12 pages, 12 parts kept in memory."
    [seen] = rig.rig.answerer.seen
    assert "[big.pdf#page=3]" in seen.attachment and PAGE3_SENTENCE in seen.attachment
    assert "of its 12 parts, those most related to the question" in seen.attachment
    assert 1 <= seen.attachment.count("[big.pdf#page=") <= 2  # document_context_chunks


def test_a_strangers_file_is_never_downloaded(make_rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_pdf(tmp_path / "lease.pdf").read_bytes()
    rig.run(document_message(STRANGER, "s1", "lease.pdf", rig.put("s1", data), "hi"))
    assert rig.fetched() == []
    assert rig.rig.answerer.seen == [] and rig.documents() == []
    assert "private assistant" in rig.rig.transport.texts[0]


def test_bad_files_get_a_clear_answer_and_nothing_is_stored(make_rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(document_max_bytes=200_000)
    good = make_pdf(tmp_path / "lease.pdf").read_bytes()
    rig.run(
        document_message(ALLOWED, "big", "huge.pdf", 5_000_000, "read", update_id=1),
        document_message(
            ALLOWED, "bad", "broken.pdf", rig.put("bad", good[:300]), "read", update_id=2
        ),
        document_message(
            ALLOWED,
            "latin",
            "old.txt",
            rig.put("latin", "Café".encode("latin-1")),
            "read",
            update_id=3,
            mime="text/plain",
        ),
        document_message(ALLOWED, "gone", "lost.pdf", 1000, "read", update_id=4),
    )
    shown = [rig.rig.transport.shown(i).text for i in range(len(rig.rig.transport.sent))]
    huge, broken, latin, gone = shown
    assert huge == (
        "⚠️ huge.pdf is 5.0 MB, over the 0.2 MB limit for documents. Please send a smaller file."
    )
    assert broken.startswith("⚠️ I couldn't take broken.pdf: broken.pdf is not a readable PDF")
    assert "not UTF-8 text" in latin
    assert "couldn't download lost.pdf" in gone
    assert "big" not in rig.fetched()  # over the limit: refused before the download
    assert rig.rig.answerer.seen == [] and rig.documents() == []


# -- links ---------------------------------------------------------------------------------------
def test_what_counts_as_a_link_message() -> None:
    assert sent_link("https://example.com/a") == ("https://example.com/a", "")
    assert sent_link("look: https://example.com/a).") == ("https://example.com/a", "look:")
    assert sent_link("/recall https://example.com") is None
    assert sent_link("two https://a.example and https://b.example") is None
    many = "I was reading this the other day and thought of you because it is about boats " * 2
    assert sent_link(many + "https://example.com") is None


def test_a_link_is_fetched_stored_and_summarised(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    with web_server() as site:
        url = f"{site}/article"
        rig.run(message(ALLOWED, url, update_id=1), message(ALLOWED, f"{site}/missing", 2))
    [seen] = rig.rig.answerer.seen  # the page that could not be fetched reached nobody
    assert seen.text == url and ARTICLE_SENTENCE in seen.attachment
    assert "short summary" in seen.attachment and seen.meta["document"] == url
    stored = rig.documents()
    assert stored and all(ref == url for ref, _ in stored)
    assert ARTICLE_SENTENCE in stored[0][1]
    assert rig.rig.transport.shown(0).text.startswith("🌐 “The Lighthouse”: ")
    failed = rig.rig.transport.shown(-1).text
    assert (
        failed
        == f"⚠️ I couldn't fetch {site}/missing: the page answered HTTP 404. Please check the link."
    )


def test_a_link_to_a_pdf_is_read_page_by_page_with_the_url_in_refs(
    make_rig, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    pdf = make_pdf(tmp_path / "lease.pdf").read_bytes()
    with web_server({"/files/lease.pdf": (pdf, "application/pdf")}) as site:
        url = f"{site}/files/lease.pdf"
        rig.run(message(ALLOWED, f"{url} can I keep a cat?"))
    refs = [ref for ref, _ in rig.documents()]
    assert refs == [f"{url}#page={n}" for n in range(1, 6)]
    [seen] = rig.rig.answerer.seen
    assert seen.text == f"{url} can I keep a cat?"
    assert PAGE3_SENTENCE in seen.attachment and "a PDF document" in seen.attachment
    assert rig.rig.transport.shown(0).text == (
        f"📄 lease.pdf ({url}): 5 pages, 5 parts kept in memory."
    )


def test_a_link_to_a_private_address_is_refused_by_default(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    rig.desk.fetch_limits = FetchLimits()
    with web_server() as site:
        rig.run(message(ALLOWED, f"{site}/article"))
    assert rig.rig.answerer.seen == [] and rig.documents() == []
    assert "private or local address" in rig.rig.transport.shown(-1).text


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_daemon_answers_a_pdf_and_recalls_it_later_by_page(
    emulator: Emulator, daemon, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ann = 5201
    data = make_pdf(tmp_path / "lease.pdf").read_bytes()
    with llm_stub() as stub:
        stub.script(StubReply("Yes: one small cat, but no dogs."), StubReply("Page 3 says so."))
        env = {
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
        }
        run, token = daemon(env_extra=env, allowed_users=str(ann))
        emulator.put_file(token, "lease", data)
        emulator.post(
            "sendMessage",
            {
                "botToken": token,
                "date": int(time.time()),
                "from": emulator.person(ann),
                "chat": {"id": ann, "type": "private", "first_name": "Ann"},
                "caption": "Can I keep a cat?",
                "document": {
                    "file_id": "lease",
                    "file_unique_id": "ulease",
                    "file_name": "lease.pdf",
                    "mime_type": "application/pdf",
                    "file_size": len(data),
                },
            },
        )
        rows = run.wait_for(
            "SELECT ref FROM memories WHERE kind = 'document' ORDER BY id",
            lambda r: len(r) >= 5,
            60,
        )
        assert [r[0] for r in rows] == [f"lease.pdf#page={n}" for n in range(1, 6)]
        run.wait_for(
            "SELECT text FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 1, 60
        )
        emulator.say(token, ann, "What did the lease say about pets?")
        run.wait_for(
            "SELECT text FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 2, 60
        )
        bodies = stub.bodies()

    def user_text(body: dict) -> str:
        last = body["messages"][-1]["content"]
        return last if isinstance(last, str) else " ".join(b.get("text", "") for b in last)

    first, later = user_text(bodies[0]), user_text(bodies[1])
    assert PAGE3_SENTENCE in first and first.rstrip().endswith("Can I keep a cat?")
    # A month later (here: the next message), the page is recalled by what it says.
    assert "What did the lease say about pets?" in later
    assert PAGE3_SENTENCE in later and "lease.pdf, page 3:" in later
    messages = run.query("SELECT role, text FROM messages ORDER BY id")
    assert messages[0] == ("user", "Can I keep a cat?")  # the document is not stored as her words


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_daemon_fetches_a_sent_link_stores_and_summarises_it(
    emulator: Emulator, daemon
) -> None:  # type: ignore[no-untyped-def]
    ann = 5202
    with llm_stub() as stub, web_server() as site:
        stub.script(StubReply("A keeper rows bread to a lighthouse island."))
        env = {
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
            "FAMILIAR_TOOLS__FETCH_ALLOW_PRIVATE": "true",  # the test site is on 127.0.0.1
        }
        run, token = daemon(env_extra=env, allowed_users=str(ann))
        url = f"{site}/article"
        emulator.say(token, ann, url)
        rows = run.wait_for(
            "SELECT ref, text FROM memories WHERE kind = 'document'", lambda r: len(r) >= 1, 60
        )
        run.wait_for(
            "SELECT text FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 1, 60
        )
        bodies = stub.bodies()
    assert rows and all(ref == url for ref, _ in rows)
    assert ARTICLE_SENTENCE in rows[0][1]
    last = bodies[0]["messages"][-1]["content"]
    seen = last if isinstance(last, str) else " ".join(b.get("text", "") for b in last)
    assert ARTICLE_SENTENCE in seen and "short summary" in seen
    assert run.query("SELECT role, text FROM messages ORDER BY id")[0] == ("user", url)
