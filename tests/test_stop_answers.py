"""⏹ Stop under an answer being written, through the daemon's whole service graph (the real chat
agent, memory and feedback wrapper) with the real anthropic SDK against the stub streaming
slowly: who may stop it (the asker or an admin; not another member, not a forged or an old
button), the three-pass status line, a daemon stopping (not a press), and the dispatcher that
lets a press through while the answer holds the chat's turn. End to end: test_e2e_stop.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.core.agent_commands import STOP_LABEL, STOPPED
from bot.core.types import Button, ButtonPress, Incoming, Reply, Sender
from bot.telegram.dispatch import UpdateDispatcher, is_stop_press
from tests.core_graph import Graph, core_graph
from tests.stubs.anthropic_stub import LLMStub
from tests.stubs.anthropic_stub import Reply as StubReply

GROUP = -1009
ANN, BOB = Sender(71, "Ann"), Sender(72, "Bob")
ROOT = Sender(73, "Root", is_admin=True)
LONG = " ".join(f"word{i}" for i in range(300))


@pytest.fixture
def stub(stub_model: LLMStub) -> LLMStub:
    return stub_model


def _stop_of(graph: Graph) -> tuple[int, Button] | None:
    """The message (1-based) showing a Stop button now, and the button."""
    for number in range(len(graph.transport.sent), 0, -1):
        shown = graph.transport.shown(number - 1)
        for row in shown.buttons:
            for b in row:
                if b.label == STOP_LABEL:
                    return number, b
    return None


async def _wait_stop(graph: Graph) -> tuple[int, Button]:
    for _ in range(400):
        found = _stop_of(graph)
        if found is not None:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"no Stop button; sent {graph.transport.texts}")


async def _press(graph: Graph, who: Sender, chat: int, button: Button, number: int) -> str:
    press = ButtonPress(chat, who, button.data, message_id=number, channel="telegram")
    return await graph.services.assistant.press(press, graph.transport)


def _start(graph: Graph, who: Sender, text: str, chat: int) -> asyncio.Task[None]:
    number = len(graph.transport.sent) + 100  # a new Telegram message each time, not a replay
    msg = Incoming(chat, who, text, is_group=chat < 0, channel="telegram", message_id=number)
    return asyncio.create_task(graph.services.assistant.handle(msg, graph.transport))


def test_only_the_asker_or_an_admin_stops_an_answer(data_dir: Path, stub: LLMStub) -> None:
    stub.script(StubReply(LONG, chunk_delay_s=0.05), StubReply(LONG, chunk_delay_s=0.05))

    async def scenario() -> tuple[list[str], str, str, list[str]]:
        async with core_graph(data_dir) as graph:
            running = _start(graph, ANN, "write a lot", GROUP)
            number, stop = await _wait_stop(graph)
            refusals = [
                await _press(graph, BOB, GROUP, stop, number),
                await _press(graph, ANN, GROUP, Button(STOP_LABEL, stop.data[:-1] + "x"), number),
                await _press(graph, ANN, -1010, stop, number),  # the button of another chat
            ]
            assert not running.done()
            stopped = await _press(graph, ANN, GROUP, stop, number)
            await asyncio.wait_for(running, 5)
            shown = graph.transport.shown(number - 1)
            late = await _press(graph, ANN, GROUP, stop, number)
            # An admin may stop another's answer.
            running = _start(graph, BOB, "write more", GROUP)
            number, stop = await _wait_stop(graph)
            await _press(graph, ROOT, GROUP, stop, number)
            await asyncio.wait_for(running, 5)
            turns = await graph.services.memory.recent_messages(GROUP)
            assert STOPPED in graph.transport.shown(number - 1).text
            with graph.db.read() as conn:
                usage = conn.execute(
                    "SELECT user_id, input_tokens, output_tokens FROM llm_usage ORDER BY id"
                ).fetchall()
            return refusals, stopped, late, [t.role for t in turns], shown, usage

    refusals, stopped, late, roles, shown, usage = asyncio.run(scenario())
    # What a stopped call read and wrote still counts toward the budget (estimated).
    assert [u[0] for u in usage] == [ANN.id, BOB.id]
    assert all(u[1] > 0 and u[2] > 0 for u in usage)
    assert refusals == [
        "Only the person who asked can stop this answer.",
        "This button is no longer valid.",
        "This button is no longer valid.",
    ]
    assert stopped == "Stopping."
    assert late == "That answer is already finished."
    assert shown.text.startswith("word0") and shown.text.endswith("\n\n" + STOPPED)
    assert "word299" not in shown.text and shown.buttons == []
    assert roles == ["user", "user"]  # nothing kept as an answer
    assert len(stub.bodies()) == 2


def test_a_finished_answer_has_no_stop_button(data_dir: Path, stub: LLMStub) -> None:
    stub.script(StubReply("short " * 40, chunk_delay_s=0.02))

    async def scenario() -> tuple[list[Reply], Reply]:
        async with core_graph(data_dir) as graph:
            await asyncio.wait_for(_start(graph, ANN, "hi", ANN.id), 10)
            partial = [r for _, r in graph.transport.edits] + [graph.transport.sent[0][1]]
            return partial, graph.transport.shown(0)

    partial, final = asyncio.run(scenario())
    assert any(b.label == STOP_LABEL for r in partial for row in r.buttons for b in row)
    assert final.text.startswith("short short") and final.buttons == []
    # (With Telegram's feedback row, it keeps 👍 👎: test_e2e_stop.py.)


def test_three_passes_are_stopped_from_the_status_line(data_dir: Path, stub: LLMStub) -> None:
    stub.script(StubReply("a draft", delay_s=5), StubReply("{}"), StubReply("x"))

    async def scenario() -> tuple[list[str], int]:
        async with core_graph(data_dir) as graph:
            running = _start(graph, ANN, "/think what is love?", ANN.id)
            number, stop = await _wait_stop(graph)
            assert await _press(graph, ANN, ANN.id, stop, number) == "Stopping."
            await asyncio.wait_for(running, 5)
            await asyncio.sleep(0.5)
            shown = [graph.transport.shown(i) for i in range(len(graph.transport.sent))]
            assert all(r.buttons == [] for r in shown)
            return [r.text for r in shown], len(stub.replies)

    texts, left = asyncio.run(scenario())
    assert texts == [STOPPED]  # the status line says so, and no other message
    assert left >= 2  # the draft's call was cut off; no critique, no refine was asked for


def test_a_daemon_stopping_is_not_a_stop_press(data_dir: Path, stub: LLMStub) -> None:
    stub.script(StubReply(LONG, chunk_delay_s=0.05))

    async def scenario() -> list[str]:
        async with core_graph(data_dir) as graph:
            running = _start(graph, ANN, "write a lot", ANN.id)
            await _wait_stop(graph)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            return [r.text for _, r in graph.transport.edits]

    edits = asyncio.run(scenario())
    assert not any(STOPPED in t for t in edits)  # replayed at the next start, not "stopped"


def test_a_stop_press_is_handled_while_the_answer_holds_the_chats_turn() -> None:
    person = {"id": 5, "is_bot": False, "first_name": "Ann"}

    def query(n: int, data: str) -> dict:
        return {"id": str(n), "from": person, "chat_instance": "c", "data": data}

    press = {"update_id": 9, "callback_query": query(1, "st:abc.def")}
    other = {"update_id": 10, "callback_query": query(2, "rv:a1.def")}
    assert is_stop_press(press) and not is_stop_press(other)
    assert not is_stop_press({"update_id": 11, "message": {"text": "st:abc"}})

    handled: list[int] = []

    class Handler:
        async def handle(self, update: Any) -> None:
            handled.append(update.update_id)

    class Inbox:
        def begin(self, update_id: int) -> int:
            return 1

        def finish(self, update_id: int, state: str = "done") -> None:
            pass

    class DB:
        async def run(self, fn: Any, *args: Any) -> Any:
            return fn(*args)

    async def scenario() -> None:
        from bot.settings import TelegramSettings

        dispatcher = UpdateDispatcher(
            DB(),  # type: ignore[arg-type]
            Inbox(),  # type: ignore[arg-type]
            Handler(),  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            TelegramSettings(),
            lambda: None,
        )
        async with dispatcher.chat_turn(5):  # the answer holding the turn (the presser's chat)
            dispatcher.dispatch(10, other)
            dispatcher.dispatch(9, press)
            await asyncio.sleep(0.3)
            assert handled == [9]  # the press got through; the other button waits its turn
        await asyncio.sleep(0.3)
        assert handled == [9, 10]

    asyncio.run(scenario())


def test_a_stop_after_a_tool_step_says_what_was_done(data_dir: Path, stub: LLMStub) -> None:
    stub.script(
        StubReply.tool("create_reminder", when="in 2h", text="call the landlord"),
        StubReply(LONG, chunk_delay_s=0.05),
    )

    async def scenario() -> tuple[Reply, list[tuple[str, ...]]]:
        async with core_graph(data_dir) as graph:
            running = _start(graph, ANN, "remind me in 2 hours to call the landlord", ANN.id)
            for _ in range(400):  # the tool has run and the answer streams on
                found = _stop_of(graph)
                if found is not None and "word0" in graph.transport.shown(found[0] - 1).text:
                    break
                await asyncio.sleep(0.025)
            number, stop = await _wait_stop(graph)
            await _press(graph, ANN, ANN.id, stop, number)
            await asyncio.wait_for(running, 5)
            with graph.db.read() as conn:
                runs = conn.execute("SELECT status, stop_reason FROM agent_runs").fetchall()
                reminders = conn.execute("SELECT text FROM reminders").fetchall()
            assert reminders == [("call the landlord",)]  # done before the stop: it stays
            return graph.transport.shown(number - 1), [tuple(r) for r in runs]

    shown, runs = asyncio.run(scenario())
    assert shown.text.endswith(f"{STOPPED} 1 tool step(s) had been done.")
    assert [b.label for row in shown.buttons for b in row] == ["🔧 steps"]
    assert runs == [("stopped", "cancelled")]


def test_an_answer_resumed_after_yes_can_be_stopped_too(data_dir: Path, stub: LLMStub) -> None:
    async def scenario() -> tuple[Reply, list[tuple[str, ...]]]:
        async with core_graph(data_dir) as graph:
            reply = await graph.say("/remember The user's old job was at Acme.", ANN)
            memory_id = int(reply.text.split("#")[1].rstrip(").").split(")")[0])
            stub.script(
                StubReply.searched("forget_memory", "I'll forget that.", id=memory_id),
                StubReply(LONG, chunk_delay_s=0.05),
            )
            await asyncio.wait_for(_start(graph, ANN, "forget my old job", ANN.id), 10)
            question = graph.transport.shown()
            yes = question.buttons[0][0]
            assert yes.label == "✅ Yes"
            number = len(graph.transport.sent)
            await _press(graph, ANN, ANN.id, yes, number)
            for _ in range(400):  # the resumed answer streams into a new message
                found = _stop_of(graph)
                if (
                    found is not None
                    and found[0] > number
                    and "word0" in graph.transport.shown(found[0] - 1).text
                ):
                    break
                await asyncio.sleep(0.025)
            resumed, stop = await _wait_stop(graph)
            assert resumed > number
            assert await _press(graph, ANN, ANN.id, stop, resumed) == "Stopping."
            for _ in range(200):
                if STOPPED in graph.transport.shown(resumed - 1).text:
                    break
                await asyncio.sleep(0.025)
            with graph.db.read() as conn:
                runs = conn.execute("SELECT status, stop_reason FROM agent_runs").fetchall()
                kept = conn.execute("SELECT count(*) FROM memories WHERE id = ?", (memory_id,))
                assert kept.fetchone()[0] == 0  # the forget was done before the stop: it stays
            return graph.transport.shown(resumed - 1), [tuple(r) for r in runs]

    shown, runs = asyncio.run(scenario())
    assert shown.text.startswith("word0") and STOPPED in shown.text
    assert "tool step(s) had been done." in shown.text  # the forget it was allowed to do
    assert [b.label for row in shown.buttons for b in row] == ["🔧 steps"]
    assert runs == [("stopped", "cancelled")]
