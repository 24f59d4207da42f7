"""To-dos on real SQLite: the store, the three tools, due dates in the chat's zone, and /todo
through the command registry with signed buttons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agents.schema import migrations as agents_migrations
from agents.tools.base import ToolContext, ToolError
from agents.tools.todos import TodoStore, TodoTools, parse_due
from bot.core.assistant import Assistant
from bot.core.signing import ButtonSigner
from bot.core.todo_commands import TodoCommands, parse_todo_args
from bot.core.transport import RecordingTransport
from bot.core.types import ButtonPress, Incoming, Sender
from bot.daemon.run import all_migrations
from memory.db import Database, Migrations
from memory.health import HealthRegistry

pytestmark = pytest.mark.anyio
BERLIN = ZoneInfo("Europe/Berlin")
ANN = Sender(11, "Ann")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "f.db", all_migrations())
    yield database
    database.close()


def tools(db: Database) -> dict:
    return {t.spec.name: t for t in TodoTools(TodoStore(db)).tools()}


def test_due_dates_are_read_in_the_chats_zone() -> None:
    now = datetime(2026, 12, 1, 15, 30, tzinfo=BERLIN)  # a Tuesday
    at, all_day = parse_due("friday 17:00", BERLIN, now)
    assert (datetime.fromtimestamp(at, BERLIN), all_day) == (
        datetime(2026, 12, 4, 17, 0, tzinfo=BERLIN),
        False,
    )
    # a date without a time: due by the end of that day, in Berlin, not in UTC
    at, all_day = parse_due("2026-12-24", BERLIN, now)
    assert all_day and datetime.fromtimestamp(at, BERLIN) == datetime(
        2026, 12, 24, 23, 59, 59, tzinfo=BERLIN
    )
    at, _ = parse_due("in 2 hours", BERLIN, now)
    assert at == now.timestamp() + 7200
    with pytest.raises(ToolError, match="cannot read 'banana' as a due date"):
        parse_due("banana", BERLIN, now)


async def test_tools_add_list_and_complete_scoped_to_the_chat(db: Database) -> None:
    t = tools(db)
    ann = ToolContext(chat_id=1, user_id=11, tz=BERLIN)
    other = ToolContext(chat_id=2, user_id=22)
    await t["add_todo"].call({"text": "water plants", "priority": "low"}, ann)
    late = await t["add_todo"].call({"text": "pay rent", "due": "2020-01-01"}, ann)
    await t["add_todo"].call({"text": "call mum", "priority": "high", "due": "friday"}, ann)
    await t["add_todo"].call({"text": "bob's thing"}, other)

    listed = await t["list_todos"].call({}, ann)
    assert [d["text"] for d in listed.data] == ["call mum", "pay rent", "water plants"]
    assert [d["overdue"] for d in listed.data] == [False, True, False]
    assert listed.content.splitlines()[0] == "3 open to-do(s), 1 overdue:"
    assert "#2 pay rent (due 2020-01-01, ⚠️ overdue)" in listed.content
    assert "bob" not in listed.content
    assert t["list_todos"].spec.read_only and not t["complete_todo"].spec.read_only

    # another chat cannot complete Ann's item, and the item stays open
    with pytest.raises(ToolError, match="no to-do #2 in this chat"):
        await t["complete_todo"].call({"id": late.data["id"]}, other)
    done = await t["complete_todo"].call({"id": late.data["id"]}, ann)
    assert done.content == "#2 done: pay rent"
    again = await t["complete_todo"].call({"id": late.data["id"]}, ann)
    assert again.content == "#2 was already done: pay rent"
    assert [d["text"] for d in (await t["list_todos"].call({}, ann)).data] == [
        "call mum",
        "water plants",
    ]


async def test_bad_input_is_refused_and_nothing_is_written(db: Database) -> None:
    t = tools(db)
    ctx = ToolContext(chat_id=1, user_id=11)
    for args, why in [
        ({"text": "   "}, "needs some text"),
        ({"text": "x", "priority": "urgent"}, "priority must be one of"),
        ({"text": "x", "due": "the day after never"}, "as a due date"),
        ({"text": "y" * 501}, "at most 500 characters"),
    ]:
        with pytest.raises(ToolError, match=why):
            await t["add_todo"].call(args, ctx)
    assert (await t["list_todos"].call({}, ctx)).data == []


async def test_completing_an_id_beyond_sqlites_range_is_a_plain_no_such_todo(db: Database) -> None:
    t = tools(db)
    ctx = ToolContext(chat_id=1, user_id=11)
    for huge in (2**63, 10**308):
        with pytest.raises(ToolError, match=f"no to-do #{huge}"):
            await t["complete_todo"].call({"id": huge}, ctx)


class Rig:
    def __init__(self, db: Database) -> None:
        self.assistant = Assistant(HealthRegistry())
        self.signer = ButtonSigner(b"k" * 32)
        TodoCommands(TodoStore(db), self.signer, BERLIN).register(self.assistant)
        self.transport = RecordingTransport()

    async def say(self, text: str, chat: int = 11, sender: Sender = ANN) -> str:
        msg = Incoming(chat, sender, text, is_group=chat < 0, channel="test")
        await self.assistant.handle(msg, self.transport)
        return self.transport.texts[-1]

    async def press(self, data: str, chat: int = 11, message_id: int | None = None) -> str:
        press = ButtonPress(chat, ANN, data, message_id=message_id)
        return await self.assistant.press(press, self.transport)


def test_todo_arguments() -> None:
    assert parse_todo_args("!high pay rent due:friday 17:00") == (
        "pay rent",
        "high",
        "friday 17:00",
    )
    assert parse_todo_args("buy milk") == ("buy milk", "normal", None)
    assert parse_todo_args("!LOW read the overdue:notice") == (
        "read the overdue:notice",
        "low",
        None,
    )


async def test_todo_command_adds_lists_by_priority_and_completes_with_signed_buttons(
    db: Database,
) -> None:
    rig = Rig(db)
    assert "/todo [!high|!low] [TEXT] [due:WHEN] | /todo done ID | /todo rm ID - Your to-do" in (
        await rig.say("/help")
    )
    assert (await rig.say("/todo")).startswith("No open to-dos.")
    assert await rig.say("/todo buy milk") == "📝 Added ⚪ #1 buy milk"
    assert "(due 2020-03-01, ⚠️ overdue)" in await rig.say(
        "/todo !low renew passport due:2020-03-01"
    )
    await rig.say("/todo !high call the bank")
    assert "as a due date" in await rig.say("/todo fix bike due:someday maybe")

    listing = await rig.say("/todo")
    assert listing.splitlines() == [
        "3 open to-do(s), 1 overdue:",
        "🔴 #3 call the bank",
        "⚪ #1 buy milk",
        "🔵 #2 renew passport (due 2020-03-01, ⚠️ overdue)",
    ]
    buttons = rig.transport.sent[-1][1].buttons
    assert [row[0].label for row in buttons][0] == "✅ #3 call the bank"
    bank = buttons[0][0].data

    # a forged button, and a real one pressed in another chat, change nothing
    assert await rig.press("td:3.AAAAAAAAAAA") == "This button isn't valid here."
    assert await rig.press(bank, chat=99) == "This button isn't valid here."
    assert "#3 call the bank" in await rig.say("/todo")
    assert rig.transport.edits == []
    listed_at = len(rig.transport.sent)  # the listing's message id (RecordingTransport counts)
    assert await rig.press(bank, message_id=listed_at) == "✅ Done: call the bank"
    redrawn = rig.transport.shown(listed_at - 1)
    assert redrawn.text.splitlines()[0] == "2 open to-do(s), 1 overdue:"
    assert "call the bank" not in redrawn.text and len(redrawn.buttons) == 2
    assert await rig.press(bank) == "That one was already done."
    assert "call the bank" not in await rig.say("/todo")


async def test_todo_done_and_rm_by_id_change_that_item_and_add_nothing(db: Database) -> None:
    rig = Rig(db)
    await rig.say("/todo buy milk")
    await rig.say("/todo call the bank")
    await rig.say("/todo fix bike", chat=99)  # #3, another chat's

    assert await rig.say("/todo done 1") == "✅ Done: #1 buy milk"
    assert await rig.say("/todo done #1") == "#1 was already done: buy milk"
    assert await rig.say("/todo done 3") == "There is no to-do #3 in this chat."
    assert await rig.say("/todo rm 2") == "🗑 Deleted #2 call the bank"
    assert await rig.say("/todo delete 2") == "There is no to-do #2 in this chat."
    assert await rig.say("/todo rm 3") == "There is no to-do #3 in this chat."
    # a subcommand without a usable id explains itself and adds nothing
    for bad in ("/todo done", "/todo done the dishes", "/todo rm ²", "/todo delete", "/todo rm -1"):
        assert (await rig.say(bad)).startswith("Usage: /todo "), bad
    assert (await rig.say("/todo")).startswith("No open to-dos.")
    # a to-do may start with a plain verb: without an id after it, it is added as written
    assert await rig.say("/todo remove the old shelf") == "📝 Added ⚪ #4 remove the old shelf"
    assert await rig.say("/todo remove 4") == "🗑 Deleted #4 remove the old shelf"
    assert await rig.say("/todo !normal done the dishes") == "📝 Added ⚪ #5 done the dishes"
    assert await rig.say("/todo rm 5") == "🗑 Deleted #5 done the dishes"
    # a deleted item's id is never handed out again: its old ✅ button must not hit a new item
    assert await rig.say("/todo water plants") == "📝 Added ⚪ #6 water plants"
    with db.read() as conn:
        rows = conn.execute(
            "SELECT id, text, done_at IS NOT NULL FROM todos ORDER BY id"
        ).fetchall()
    assert rows == [(1, "buy milk", 1), (3, "fix bike", 0), (6, "water plants", 0)]
    help_text = await rig.say("/help")
    assert "/todo done ID" in help_text and "/todo rm ID" in help_text


async def test_todo_add_and_list_words_are_read_as_a_person_means_them(db: Database) -> None:
    """Found trying the console: "/todo add buy milk" added "add buy milk"."""
    rig = Rig(db)
    assert await rig.say("/todo add buy milk") == "📝 Added ⚪ #1 buy milk"
    assert await rig.say("/todo add !high pay rent") == "📝 Added 🔴 #2 pay rent"
    listed = await rig.say("/todo list")
    assert listed == await rig.say("/todo") and "#1 buy milk" in listed and "#2 pay rent" in listed
    assert (await rig.say("/todo add")).startswith("Usage: /todo ")
    # "list" with more after it is the start of a to-do, as written
    assert await rig.say("/todo show the kids the museum") == (
        "📝 Added ⚪ #3 show the kids the museum"
    )


async def test_in_a_group_only_the_adder_or_an_admin_deletes_but_anyone_completes(
    db: Database,
) -> None:
    rig, group = Rig(db), -500
    bob, boss = Sender(22, "Bob"), Sender(33, "Cy", is_chat_admin=True)
    await rig.say("/todo book the room", chat=group)  # #1, Ann's
    await rig.say("/todo bring cake", chat=group)  # #2, Ann's
    await rig.say("/todo order pizza", chat=group)  # #3, Ann's
    assert await rig.say("/todo rm 1", chat=group, sender=bob) == (
        "#1 was added by someone else: only they or a group admin can delete it."
    )
    assert await rig.say("/todo done 1", chat=group, sender=bob) == "✅ Done: #1 book the room"
    assert await rig.say("/todo rm 2", chat=group, sender=boss) == "🗑 Deleted #2 bring cake"
    assert await rig.say("/todo rm 3", chat=group) == "🗑 Deleted #3 order pizza"
    with db.read() as conn:
        assert conn.execute("SELECT id, done_at IS NOT NULL FROM todos").fetchall() == [(1, 1)]


def test_the_migration_to_never_reused_ids_keeps_every_item(tmp_path: Path) -> None:
    before = [m for m in all_migrations() if m.package != "agents"]
    step = [name for name, _ in agents_migrations.steps].index("m007_todo_ids_never_reused")
    old = Database.open(
        tmp_path / "f.db", [*before, Migrations("agents", agents_migrations.steps[:step])]
    )
    with old.transaction() as conn:
        for id_, text, done in [(1, "a", None), (2, "b", 5.0), (3, "c", None)]:
            conn.execute(
                "INSERT INTO todos (id, chat_id, text, timezone, created_at, done_at, source_key)"
                " VALUES (?, 7, ?, 'UTC', 1.0, ?, ?)",
                (id_, text, done, f"k{id_}"),
            )
        conn.execute("DELETE FROM todos WHERE id = 3")  # the old table would hand out #3 again
    old.close()
    db = Database.open(tmp_path / "f.db", all_migrations())
    try:
        with db.read() as conn:
            rows = conn.execute("SELECT id, text, done_at, source_key FROM todos").fetchall()
            indexes = {r[0] for r in conn.execute("SELECT name FROM pragma_index_list('todos')")}
        assert rows == [(1, "a", None, "k1"), (2, "b", 5.0, "k2")]
        assert {"todos_open", "todos_source"} <= indexes
    finally:
        db.close()
