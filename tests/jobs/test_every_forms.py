"""/every takes the quoted form its usage line shows, and says when a schedule never fires."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.core.types import Sender
from jobs.errors import ReminderError
from jobs.remindparse import split_every
from tests.core_graph import core_graph

pytestmark = pytest.mark.anyio
BERLIN = ZoneInfo("Europe/Berlin")
ANN = Sender(11, "Ann")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    "args",
    [
        '"0 9 * * 1-5" stand-up',
        "'0 9 * * 1-5' stand-up",
        "“0 9 * * 1-5” stand-up",  # what a phone's keyboard types
        '"0  9 * *  1-5"   stand-up',
        "0 9 * * 1-5 stand-up",
    ],
)
def test_quoted_and_bare_schedules_read_the_same(args: str) -> None:
    assert split_every(args, BERLIN) == ("0 9 * * 1-5", "stand-up")


def test_quoted_shortcut_and_a_missing_closing_quote() -> None:
    assert split_every('"@daily" water the plants', BERLIN) == ("0 9 * * *", "water the plants")
    with pytest.raises(ReminderError, match="closing quote is missing"):
        split_every('"0 9 * * 1-5 stand-up', BERLIN)


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 12 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_says_so(cron: str) -> None:
    with pytest.raises(ReminderError, match="never fires"):
        split_every(f'"{cron}" payday', BERLIN)


async def test_every_command_with_the_usage_lines_own_form(data_dir: Path) -> None:
    async with core_graph(data_dir) as graph:
        usage = (await graph.say("/every", ANN)).text
        assert usage.startswith('Usage: /every "0 9 * * 1-5" TEXT')
        reply = await graph.say('/every "0 9 * * 1-5" stand-up', ANN)
        assert reply.text.startswith("⏰ I'll remind you every `0 9 * * 1-5`: stand-up"), reply.text
        never = await graph.say('/every "0 0 31 2 *" payday', ANN)
        assert "never fires" in never.text
        listed = (await graph.say("/reminders", ANN)).text
        assert "stand-up" in listed and "payday" not in listed
