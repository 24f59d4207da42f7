"""The assistant core through the console channel: commands, usage lines, numbered buttons."""

from __future__ import annotations

import asyncio
import functools
import io

from bot.console import CONSOLE_CHAT_ID, ConsoleChannel
from bot.core.assistant import Assistant
from bot.core.commands import Command, parse_command
from bot.core.transport import RecordingTransport
from bot.core.types import Button, ButtonPress, Incoming, Reply, Sender
from memory.health import CheckResult, HealthRegistry, Status


def make_assistant() -> Assistant:
    health = HealthRegistry()
    health.register("thing", lambda: CheckResult("thing", Status.DEGRADED, "half there"))
    return Assistant(health)


def console(assistant: Assistant) -> tuple[ConsoleChannel, io.StringIO]:
    out = io.StringIO()
    return ConsoleChannel(assistant, on_eof=lambda: None, stdin=io.StringIO(), stdout=out), out


def test_help_lists_every_visible_command() -> None:
    assistant = make_assistant()
    channel, out = console(assistant)
    asyncio.run(channel.handle_line("/help"))
    for command in assistant.commands.visible_to(is_admin=True):
        assert f"/{command.name}" in out.getvalue()


def test_non_admins_do_not_see_or_run_admin_commands() -> None:
    assistant = make_assistant()
    transport = RecordingTransport()
    user = Sender(7, "Ann", is_admin=False)
    asyncio.run(assistant.handle(Incoming(5, user, "/help"), transport))
    assert "/invite" not in transport.texts[-1]
    asyncio.run(assistant.handle(Incoming(5, user, "/invite"), transport))
    assert transport.texts[-1] == "/invite is for admins only."


def test_unknown_command_and_missing_arguments() -> None:
    assistant = make_assistant()

    async def echo(msg: Incoming, args: str, transport: object) -> Reply:
        return Reply(f"echo {args}")

    assistant.commands.add(Command("echo", "Echo", echo, usage="/echo TEXT", needs_args=True))
    transport = RecordingTransport()
    user = Sender(1, "A")
    asyncio.run(assistant.handle(Incoming(1, user, "/nope"), transport))
    asyncio.run(assistant.handle(Incoming(1, user, "/echo"), transport))
    asyncio.run(assistant.handle(Incoming(1, user, "/echo@FamiliarBot hi there"), transport))
    assert transport.texts == [
        "I don't know /nope. /help lists what I can do.",
        "Usage: /echo TEXT",
        "echo hi there",
    ]


def test_status_reports_each_check() -> None:
    channel, out = console(make_assistant())
    asyncio.run(channel.handle_line("/status"))
    assert "degraded" in out.getvalue()
    assert "thing: half there" in out.getvalue()


def test_plain_text_without_a_model_names_the_setting() -> None:
    channel, out = console(make_assistant())
    asyncio.run(channel.handle_line("hello"))
    assert "FAMILIAR_LLM__PROVIDER" in out.getvalue()


def test_buttons_are_numbered_choices_and_a_number_presses_one() -> None:
    assistant = make_assistant()
    pressed: list[ButtonPress] = []

    async def offer(msg: Incoming, args: str, transport: object) -> Reply:
        return Reply("Pick", buttons=[[Button("👍", "v:up"), Button("👎", "v:down")]])

    async def vote(press: ButtonPress, payload: str, transport: object) -> str:
        pressed.append(press)
        return f"noted {payload}"

    assistant.commands.add(Command("offer", "Offer", offer))
    assistant.buttons["v"] = vote
    channel, out = console(assistant)
    asyncio.run(channel.handle_line("/offer"))
    assert "[1] 👍  [2] 👎" in out.getvalue()
    asyncio.run(channel.handle_line("2"))
    assert pressed[0].data == "v:down" and pressed[0].chat_id == CONSOLE_CHAT_ID
    assert "(noted down)" in out.getvalue()


def test_a_number_presses_only_the_buttons_just_shown() -> None:
    """Typed later (after another choice, or another message), "1" is a message, not a press of
    a confirmation shown long before."""
    assistant = make_assistant()
    pressed: list[str] = []

    async def confirm(msg: Incoming, args: str, transport: object) -> Reply:
        return Reply("Erase it all?", buttons=[[Button("Yes", "c:yes"), Button("No", "c:no")]])

    async def answer(press: ButtonPress, payload: str, transport: object) -> str:
        pressed.append(payload)
        return payload

    assistant.commands.add(Command("erase", "Erase", confirm))
    assistant.buttons["c"] = answer
    channel, out = console(assistant)
    asyncio.run(channel.handle_line("/erase"))
    asyncio.run(channel.handle_line("2"))
    asyncio.run(channel.handle_line("1"))  # a plain message now: "No" was the answer
    asyncio.run(channel.handle_line("/erase"))
    asyncio.run(channel.handle_line("/help"))
    asyncio.run(channel.handle_line("1"))  # the question was left unanswered
    assert pressed == ["no"]
    assert out.getvalue().count("FAMILIAR_LLM__PROVIDER") == 2  # both "1"s went to the assistant


def test_parse_command_rejects_non_commands() -> None:
    assert parse_command("hello /help") is None
    assert parse_command("/") is None
    assert parse_command("/a-b") is None
    assert parse_command("/Help me") == ("help", "me")


def test_quit_and_exit_end_the_console_like_ctrl_d_and_reach_no_one() -> None:
    """Found trying the console: /quit was answered "I don't know /quit"."""
    for word in ("/quit", "/EXIT"):
        assistant = make_assistant()
        ended: list[bool] = []
        out = io.StringIO()
        stdin = io.StringIO(f"/status\n{word}\n/help\n")
        channel = ConsoleChannel(
            assistant, functools.partial(ended.append, True), stdin=stdin, stdout=out
        )

        async def session(channel: ConsoleChannel = channel) -> None:
            await channel.start()
            assert channel._task is not None
            await asyncio.wait_for(channel._task, 10)

        asyncio.run(session())
        assert ended == [True]
        text = out.getvalue()
        assert "thing" in text  # /status was answered
        assert "I don't know" not in text and "Commands:" not in text  # /help never ran
