"""The durable inbox, the command menu, and the channel's behaviour when Telegram is away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from bot.config import load_settings
from bot.core.assistant import Assistant
from bot.core.schema import migrations
from bot.telegram.channel import TelegramChannel, menu_commands
from bot.telegram.inbox import Inbox, chat_key
from bot.telegram.limits import TokenBucket
from bot.telegram.reach import ReachRequest
from memory.db import Database
from memory.health import HealthRegistry, Status
from tests.telegram.conftest import free_port


def test_inbox_dedupes_replays_and_gives_up(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "x.db", [migrations])
    inbox = Inbox(db, max_attempts=2)
    batch = [{"update_id": 5, "message": {"chat": {"id": 1}}}, {"update_id": 6}]
    assert [u for u, _ in inbox.add(batch)] == [5, 6]
    assert inbox.add(batch) == []  # redelivered: ignored
    inbox.begin(5)
    inbox.finish(5)
    assert [u for u, _ in inbox.pending()] == [6]
    inbox.begin(6)
    inbox.begin(6)  # started twice without finishing (two crashes)
    assert inbox.pending() == []
    assert inbox.counts() == {"done": 1, "failed": 1}
    with db.read() as conn:
        assert (
            conn.execute("SELECT count(*) FROM inbox WHERE payload IS NOT NULL").fetchone()[0] == 0
        )
    db.close()


def test_chat_key() -> None:
    assert chat_key({"message": {"chat": {"id": -5}}}) == -5
    assert chat_key({"callback_query": {"from": {"id": 3}}}) == 3
    assert chat_key({"weird": 1}) == 0


def test_set_my_commands_agrees_with_help() -> None:
    assistant = Assistant(HealthRegistry())
    for is_admin in (False, True):
        menu = {(c.command, c.description) for c in menu_commands(assistant.commands, is_admin)}
        help_lines = assistant.commands.help_text(is_admin).splitlines()[1:-1]
        from_help = {
            (line.split(" - ")[0].split()[0].lstrip("/"), line.split(" - ", 1)[1])
            for line in help_lines
        }
        assert menu == from_help
    assert "invite" not in {c.command for c in menu_commands(assistant.commands, False)}


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(2, 60, clock=lambda: now[0])
    assert [bucket.take(1), bucket.take(1), bucket.take(1), bucket.take(2)] == [
        True,
        True,
        False,
        True,
    ]
    now[0] = 1.0
    assert bucket.take(1) and not bucket.take(1)


def test_unreachable_telegram_keeps_the_channel_up_and_degraded(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FAMILIAR_TELEGRAM__TOKEN", "1:x")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__BASE_URL", f"http://127.0.0.1:{free_port()}/bot")
    settings = load_settings(data_dir=tmp_path)
    db = Database.open(tmp_path / "x.db", [migrations])
    health = HealthRegistry()
    failures: list[Exception] = []

    async def run() -> list:
        channel = TelegramChannel(settings, db, Assistant(health), health, failures.append)
        await channel.start()
        await asyncio.sleep(1.5)
        results = await health.run()
        await channel.stop()
        # Its calls are recorded where its dispatcher looks: none answered (refused, all).
        assert isinstance(channel.bot.request, ReachRequest)
        assert channel.dispatcher.reach is channel.reach and channel.reach.last_answer is None
        return results

    results = asyncio.run(run())
    telegram = [r for r in results if r.name == "telegram"][0]
    assert telegram.status is Status.DEGRADED and "unreachable" in telegram.detail
    assert failures == []
    db.close()


def test_an_update_that_died_max_attempts_times_is_told_once(tmp_path: Path) -> None:
    """The poison limit stays; the sender hears their message was not answered, the admins why."""
    from bot.settings import TelegramSettings
    from bot.telegram.dispatch import UpdateDispatcher
    from tests.telegram.helpers import ADMIN, ALLOWED, build_rig, message

    stranger = 999
    rig = build_rig(tmp_path)
    inbox = Inbox(rig.db, max_attempts=3)
    inbox.add([message(ALLOWED, "crash me", update_id=9), message(stranger, "hi", update_id=10)])
    for _ in range(3):  # three starts, each ended by a crash or a kill
        inbox.begin(9)
        inbox.begin(10)
    inbox.add([message(ALLOWED, "fine", update_id=11)])
    inbox.begin(11)  # died once: replayed, not given up
    tg = TelegramSettings()
    dispatcher = UpdateDispatcher(rig.db, inbox, rig.handler, None, tg, lambda: None)  # type: ignore[arg-type]

    assert asyncio.run(dispatcher.give_up_poisoned()) == 2
    to = {chat: [r.text for c, r in rig.transport.sent if c == chat] for chat in (ALLOWED, ADMIN)}
    assert len(to[ALLOWED]) == 1 and "could not answer" in to[ALLOWED][0]
    assert len(to[ADMIN]) == 2
    assert "update 9" in to[ADMIN][0] and "3 times" in to[ADMIN][0]
    assert "update 10" in to[ADMIN][1]
    assert not [c for c, _ in rig.transport.sent if c == stranger]  # strangers hear nothing
    assert "crash me" not in " ".join(to[ADMIN])  # the admins get why, not what was written
    assert [u for u, _ in inbox.pending()] == [11]

    sent = len(rig.transport.sent)
    assert asyncio.run(dispatcher.give_up_poisoned()) == 0  # told once, even over restarts
    assert len(rig.transport.sent) == sent
    assert inbox.counts() == {"failed": 2, "pending": 1}


def test_a_given_up_answer_cut_off_mid_stream_says_so_in_its_own_message(tmp_path: Path) -> None:
    from bot.core.drafts import AnswerDrafts
    from bot.core.types import Incoming, Reply, Sender, SentMessage
    from bot.settings import TelegramSettings
    from bot.telegram.dispatch import UpdateDispatcher
    from tests.telegram.helpers import ADMIN, ALLOWED, build_rig, message

    rig = build_rig(tmp_path)
    inbox = Inbox(rig.db, max_attempts=2)
    inbox.add([message(ALLOWED, "long question", update_id=9)])
    cut = asyncio.run(rig.transport.send(ALLOWED, Reply("The answer begins …")))
    asked = Incoming(ALLOWED, Sender(ALLOWED), "long question", 9, channel="telegram")
    asyncio.run(AnswerDrafts(rig.db).started(asked, cut))
    inbox.begin(9)
    inbox.begin(9)
    dispatcher = UpdateDispatcher(
        rig.db, inbox, rig.handler, None, TelegramSettings(), lambda: None
    )  # type: ignore[arg-type]

    assert asyncio.run(dispatcher.give_up_poisoned()) == 1
    assert [c for c, _ in rig.transport.sent] == [ALLOWED, ADMIN]  # no second message to Ann
    assert "could not answer" in rig.transport.shown(0).text
    assert rig.transport.edits[0][0] == SentMessage(ALLOWED, cut.message_id)
    draft = asyncio.run(AnswerDrafts(rig.db).get(asked))
    assert draft is not None and draft.done


def test_a_retried_update_keeps_its_chat_in_order(tmp_path: Path) -> None:
    """Telegram unreachable while answering the first message: the chat's next message waits for
    the retry, so answers come in the order asked (and the model never sees them merged)."""
    from telegram.error import NetworkError

    from bot.core.transport import Transport
    from bot.core.types import Incoming, Reply
    from bot.settings import TelegramSettings
    from bot.telegram.dispatch import UpdateDispatcher
    from tests.telegram.helpers import ALLOWED, build_rig, message

    rig = build_rig(tmp_path)
    cut_off = ["first"]  # the first try of "first" finds Telegram unreachable

    async def answer(msg: Incoming, transport: Transport) -> None:
        if msg.text in cut_off:
            cut_off.remove(msg.text)
            raise NetworkError("connection reset")
        await transport.send(msg.chat_id, Reply(f"answer to: {msg.text}"))

    rig.assistant.answer_text = answer
    inbox = Inbox(rig.db, max_attempts=3)
    tg = TelegramSettings(retry_max_s=0.2)
    dispatcher = UpdateDispatcher(rig.db, inbox, rig.handler, None, tg, lambda: None)  # type: ignore[arg-type]

    async def main() -> None:
        for update_id, payload in inbox.add(
            [message(ALLOWED, "first", update_id=1), message(ALLOWED, "second", update_id=2)]
        ):
            dispatcher.dispatch(update_id, payload)
        while dispatcher.tasks:
            await asyncio.gather(*dispatcher.tasks)

    asyncio.run(main())
    answers = [r.text for chat, r in rig.transport.sent if chat == ALLOWED]
    assert answers == ["answer to: first", "answer to: second"]
    assert inbox.counts() == {"done": 2}


def test_a_storage_fault_mid_answer_is_retried_told_once_and_not_counted(tmp_path: Path) -> None:
    """The disk fills while a stored message is answered: the update stays in hand and is tried
    again until storage works, the sender is told once why (not "something went wrong"), and
    the retries do not count toward the poison limit (a restart meanwhile must not drop it)."""
    import sqlite3

    from bot.core.transport import Transport
    from bot.core.types import Incoming, Reply
    from bot.settings import TelegramSettings
    from bot.telegram.dispatch import UpdateDispatcher
    from tests.telegram.helpers import ALLOWED, build_rig, message

    full = sqlite3.connect(tmp_path / "tiny.db")  # a real SQLITE_FULL: a database that cannot grow
    full.execute("CREATE TABLE t (x BLOB)")
    full.execute("PRAGMA max_page_count = 3")
    faults = [2]  # the first two tries find the disk full

    async def answer(msg: Incoming, transport: Transport) -> None:
        if faults[0]:
            faults[0] -= 1
            full.execute("INSERT INTO t VALUES (zeroblob(100000))")
        await transport.send(msg.chat_id, Reply(f"answer to: {msg.text}"))

    rig = build_rig(tmp_path)
    rig.assistant.answer_text = answer
    inbox = Inbox(rig.db, max_attempts=2)
    dispatcher = UpdateDispatcher(
        rig.db, inbox, rig.handler, None, TelegramSettings(), lambda: None
    )  # type: ignore[arg-type]

    async def main() -> None:
        for update_id, payload in inbox.add([message(ALLOWED, "first", update_id=1)]):
            dispatcher.dispatch(update_id, payload)
        while dispatcher.tasks:
            await asyncio.gather(*dispatcher.tasks)

    asyncio.run(main())
    full.close()
    said = [r.text for chat, r in rig.transport.sent if chat == ALLOWED]
    assert len(said) == 2, said
    assert "could not finish answering" in said[0] and "space is freed" in said[0]
    assert said[1] == "answer to: first"
    assert inbox.counts() == {"done": 1}
    assert inbox.attempts(1) == 1


def _dispatch_one(tmp_path: Path, answer, text: str, retry_max_s: float, reach=None):  # type: ignore[no-untyped-def]
    """One update handed to a real dispatcher over a rig whose assistant answers with
    ``answer`` (and whose record of Telegram's answers is ``reach``), run until it is finished
    or given up (20 s at most); (rig, inbox)."""
    from bot.settings import TelegramSettings
    from bot.telegram.dispatch import UpdateDispatcher
    from tests.telegram.helpers import ALLOWED, build_rig, message

    rig = build_rig(tmp_path)
    rig.assistant.answer_text = answer
    inbox = Inbox(rig.db, max_attempts=3)
    tg = TelegramSettings(retry_max_s=retry_max_s)
    dispatcher = UpdateDispatcher(rig.db, inbox, rig.handler, None, tg, lambda: None, reach)  # type: ignore[arg-type]

    async def main() -> None:
        for update_id, payload in inbox.add([message(ALLOWED, text, update_id=1)]):
            dispatcher.dispatch(update_id, payload)
        while dispatcher.tasks:
            await asyncio.wait_for(asyncio.gather(*dispatcher.tasks), 20)

    asyncio.run(main())
    return rig, inbox


def test_telegram_unreachable_longer_than_the_retries_loses_no_message(tmp_path: Path) -> None:
    """Found by bench/faults.py --scenario telegram_down --seed 31 (trial 2, a 9 s outage): a
    message being answered when Telegram went away was given up ("failed") after three quick
    retries. Refused or reset connections are Telegram's absence, not the update's fault: they
    do not count toward the poison limit, and the update is answered once Telegram is back."""

    from bot.core.transport import Transport
    from bot.core.types import Incoming, Reply
    from bot.telegram.reach import TelegramReach
    from tests.telegram.helpers import ALLOWED

    down = [6]  # six tries find Telegram away, twice the poison limit
    reach = TelegramReach()
    reach.answered()  # it answered before the outage; nothing answers during it

    async def answer(msg: Incoming, transport: Transport) -> None:
        if down[0]:
            down[0] -= 1
            raise unreachable()
        await transport.send(msg.chat_id, Reply(f"answer to: {msg.text}"))

    rig, inbox = _dispatch_one(tmp_path, answer, "first", 0.2, reach)
    assert [r.text for chat, r in rig.transport.sent if chat == ALLOWED] == ["answer to: first"]
    assert inbox.counts() == {"done": 1}
    assert inbox.attempts(1) == 1


def test_an_update_telegram_keeps_refusing_is_given_up_not_retried_for_ever(tmp_path: Path) -> None:
    """Telegram's own answer about this request (413 "file too large" comes as a NetworkError
    without a transport cause) is not its absence: it counts, so the update is given up at the
    poison limit instead of holding its chat's turn for ever."""
    from telegram.error import NetworkError

    from bot.core.transport import Transport
    from bot.core.types import Incoming
    from bot.telegram.dispatch import telegram_absent

    tries = [0]

    async def answer(msg: Incoming, transport: Transport) -> None:
        tries[0] += 1
        raise NetworkError("File too large. Check telegram api limits")

    _, inbox = _dispatch_one(tmp_path, answer, "send me the file", 0.05)
    assert tries[0] == 3 and inbox.counts() == {"failed": 1}
    assert not telegram_absent(NetworkError("Bad Gateway"))


def unreachable() -> Exception:
    """A connection refused, as PTB raises it (a NetworkError from httpx's ConnectError)."""
    from telegram.error import NetworkError

    cause = httpx.ConnectError("All connection attempts failed")
    try:
        raise NetworkError(f"httpx.ConnectError: {cause}") from cause
    except NetworkError as exc:
        return exc


def test_an_update_that_cannot_reach_telegram_while_others_do_is_given_up_and_told(
    tmp_path: Path,
) -> None:
    """Issue #19: a connection failure went uncounted on the assumption that Telegram was away
    for everyone. When Telegram answers other calls (the poller, other chats) between this
    update's failures, the failures are its own: they count, and at the poison limit it is
    given up with its sender and the admins told, instead of holding its chat's turn for ever."""
    from bot.core.transport import Transport
    from bot.core.types import Incoming
    from bot.telegram.reach import TelegramReach
    from tests.telegram.helpers import ADMIN, ALLOWED

    reach = TelegramReach()
    tries = [0]

    async def answer(msg: Incoming, transport: Transport) -> None:
        tries[0] += 1
        reach.answered()  # another chat's send got through since this one's last failure
        raise unreachable()

    rig, inbox = _dispatch_one(tmp_path, answer, "first", 0.05, reach)
    assert inbox.counts() == {"failed": 1}
    assert tries[0] == 4  # the first failure is not counted: Telegram may have been away
    [told] = [r.text for chat, r in rig.transport.sent if chat == ALLOWED]
    assert "could not answer" in told and "Telegram did not take my answer" in told
    [alert] = [r.text for chat, r in rig.transport.sent if chat == ADMIN]
    assert "Dropped update 1" in alert and "answered other calls" in alert


def test_the_bot_api_request_records_each_answer_and_no_refused_connection() -> None:
    """What the dispatcher's counting rests on: any HTTP answer (a 500 too) is Telegram
    answering; a refused connection is not."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from telegram.error import NetworkError

    from bot.telegram.reach import ReachRequest, TelegramReach

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reach = TelegramReach()
    request = ReachRequest(reach, connect_timeout=2.0)

    async def call(url: str) -> int:
        await request.initialize()
        try:
            status, _ = await request.do_request(url, "POST")
            return status
        finally:
            await request.shutdown()

    try:
        closed = f"http://127.0.0.1:{free_port()}/botX/getMe"
        try:
            asyncio.run(call(closed))
            raise AssertionError("a refused connection raised nothing")
        except NetworkError:
            pass
        assert reach.last_answer is None
        assert asyncio.run(call(f"http://127.0.0.1:{server.server_port}/botX/getMe")) == 500
        assert reach.last_answer is not None and reach.answered_since(reach.last_answer - 1)
    finally:
        server.shutdown()
        server.server_close()
