"""Every command's arguments, fuzzed through the real command registry: each input gets a reply
(or a file), never an exception, which in Telegram means "Sorry, something went wrong" and an
admin alert. Plus the odd numbers that did reach the error handler."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.commands import parse_id
from bot.core.types import Incoming, Sender
from tests.core_graph import Graph, core_graph

ANN = Sender(11, "Ann")
ADMIN = Sender(12, "Root", is_admin=True)
SLOW = {"backup"}  # takes no arguments; each run writes and verifies a whole backup

ODD = ["²", "١٢", "𝟗", "½", "Ⅻ", "1e309", "nan", "inf", "-0", "0x10", "#", "#0", "#²", "9" * 5000]
NUMBERS = st.one_of(
    st.sampled_from(ODD),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(2**63 - 3, 2**63 + 3).map(str),  # around SQLite's largest integer
    st.integers(10**13, 10**16).map(str),  # past timedelta's range in minutes
)
UNITS = st.sampled_from(["m", "minutes", "h", "hours", "days", "weeks", "years", "s"])
WHEN = st.one_of(
    st.builds(lambda n, u: f"in {n} {u}", NUMBERS, UNITS),
    st.builds(lambda d: f"{d} 08:30", st.dates().map(str)),
    st.builds(lambda h, m: f"tomorrow {h}:{m}", NUMBERS, NUMBERS),
)
CRON_FIELD = st.one_of(NUMBERS, st.sampled_from(["*", "*/0", "*/7", "1-5", "5-1", "31", "2", "L"]))
CRON = st.builds(
    lambda fields, quote: f"{quote}{' '.join(fields)}{quote}",
    st.lists(CRON_FIELD, min_size=1, max_size=6),
    st.sampled_from(["", '"', "'", "“"]),
)
ARGS = st.one_of(
    NUMBERS,
    st.text(max_size=60),
    st.builds(lambda w, t: f"{w} {t}", WHEN, st.text(max_size=10)),
    st.builds(lambda c, t: f"{c} {t}", CRON, st.text(max_size=10)),
    st.sampled_from(["on", "off", "ON", "status", "optin on", "optin maybe", "default", "#1"]),
)


async def _reply_to(graph: Graph, text: str, sender: Sender) -> None:
    sent, files = len(graph.transport.sent), len(graph.transport.files)
    await graph.services.assistant.handle(Incoming(sender.id, sender, text), graph.transport)
    grew = len(graph.transport.sent) > sent or len(graph.transport.files) > files
    assert grew, f"no reply to {text!r}"


@pytest.fixture(scope="module")
def module_graph(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One graph for the whole fuzz (each command's run adds to the same memory and reminders)."""
    loop = asyncio.new_event_loop()
    context = core_graph(tmp_path_factory.mktemp("fuzz") / "data")
    built = loop.run_until_complete(context.__aenter__())
    yield loop, built
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()


@pytest.mark.parametrize(
    "text",
    [
        "/forget ²",
        "/forget 99999999999999999999999",
        "/forget #" + "9" * 5000,
        "/remind in 99999999999999 minutes x",
        "/remind in " + "9" * 5000 + " years x",
        "/remind 9999-12-31 23:59 end of time",
    ],
)
def test_odd_numbers_get_a_usage_line_not_an_error(module_graph, text: str) -> None:  # type: ignore[no-untyped-def]
    loop, built = module_graph
    loop.run_until_complete(_reply_to(built, text, ANN))
    reply = built.transport.texts[-1]
    assert reply.startswith("Usage: /forget ID") or "I cannot use" in reply, reply


def test_parse_id_takes_plain_ascii_ids_only() -> None:
    assert [parse_id(t) for t in ("12", "#12", " 7 ", str(2**63 - 1))] == [12, 12, 7, 2**63 - 1]
    for odd in ("²", "١٢", "0", "-3", "+3", str(2**63), "1e3", "", "#", "12a"):
        assert parse_id(odd) is None, odd


COMMANDS = [
    "start", "help", "status", "remember", "recall", "memories", "forget", "context", "summary",
    "think", "review", "persona", "usage", "export", "forgetme", "invite", "remind", "every",
    "reminders", "train", "adapters", "todo",
]  # fmt: skip


def test_the_fuzz_covers_every_command(module_graph) -> None:  # type: ignore[no-untyped-def]
    _, built = module_graph
    assert {c.name for c in built.services.assistant.commands} - SLOW <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_answers_any_arguments(module_graph, name: str) -> None:  # type: ignore[no-untyped-def]
    loop, built = module_graph
    if built.services.assistant.commands.get(name) is None:
        pytest.skip(f"/{name} is not registered in this build")

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(args=ARGS, admin=st.booleans())
    def one(args: str, admin: bool) -> None:
        loop.run_until_complete(_reply_to(built, f"/{name} {args}", ADMIN if admin else ANN))

    one()


def test_a_superscript_digit_in_the_console_is_text_not_a_button_number() -> None:
    import io

    from bot.console import ConsoleChannel
    from bot.core.assistant import Assistant
    from memory.health import HealthRegistry

    assistant = Assistant(HealthRegistry())
    seen: list[str] = []

    async def answer(msg: Incoming, transport: object) -> None:
        seen.append(msg.text)

    assistant.answer_text = answer
    channel = ConsoleChannel(assistant, lambda: None, io.StringIO(), io.StringIO())
    asyncio.run(channel.handle_line("²"))
    assert seen == ["²"]


def test_a_command_name_ends_at_any_whitespace() -> None:
    from bot.core.commands import parse_command

    assert parse_command("/remember\nmilk and eggs") == ("remember", "milk and eggs")
    assert parse_command("/forget\t12") == ("forget", "12")
