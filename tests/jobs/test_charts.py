"""Charts: each is a valid PNG drawn from the data it claims to show.

What a figure shows is read from its artists (line data, bar heights, table cells) before it is
rendered; the PNG is then opened with Pillow. The data come from where the features take them:
the training pipeline's row, the digest's SQL on real SQLite, the usage table.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from agents.providers.base import Usage
from agents.schema import migrations as agents_migrations
from agents.settings import LLMSettings
from agents.training.registry import AdapterRegistry
from agents.usage import CallContext, UsageRecord, UsageStore
from bot.core.agent_commands import AgentCommands
from bot.core.schema import migrations as bot_migrations
from bot.core.signing import ButtonSigner
from bot.core.train_commands import TrainCommands, TrainingPrefs
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Sender
from jobs.charts import activity_figure, loss_figure, png, usage_figure
from jobs.digest import DailyDigest, collect
from jobs.settings import JobsSettings
from memory.db import Database
from tests.jobs.conftest import all_test_migrations, fill

NOW = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)
EVALUATION = {
    "version": "v3",
    "base_loss": 2.5,
    "adapter_loss": 1.9,
    "improvement": 0.24,
    "margin": 0.05,
    "proposed": True,
    "adapter_wins": 4,
    "base_wins": 1,
    "ties": 1,
}


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Database.open(
        tmp_path / "familiar.db", [*all_test_migrations(), agents_migrations, bot_migrations]
    )
    yield d
    d.close()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.verify()  # a truncated or corrupt PNG raises here
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.width > 200 and image.height > 100
    return image


def test_the_loss_chart_shows_both_curves_and_the_evaluation() -> None:
    losses = [3.0, 2.6, 2.4, 2.1, 2.0]
    figure = loss_figure("pirate v3", losses, EVALUATION)
    curve, held_out = figure.axes[0].lines
    assert list(curve.get_xdata()) == [1, 2, 3, 4, 5] and list(curve.get_ydata()) == losses
    assert list(held_out.get_xdata()) == [0, 5] and list(held_out.get_ydata()) == [2.5, 1.9]
    cells = {
        figure.axes[1].tables[0][r, 0].get_text().get_text(): figure.axes[1]
        .tables[0][r, 1]
        .get_text()
        .get_text()
        for r in range(1, 6)
    }
    assert cells["held-out loss, base model"] == "2.5000"
    assert cells["held-out loss, adapter"] == "1.9000"
    assert cells["improvement"] == "+24.0% (needs +5%)"
    assert cells["probes won / lost / tied"] == "4 / 1 / 1"
    opened(png(figure))


def test_train_report_sends_the_chart_once(db: Database, tmp_path: Path) -> None:
    commands = TrainCommands(
        db,
        None,
        AdapterRegistry(tmp_path / "adapters"),
        ButtonSigner(b"k" * 32),
        TrainingPrefs(db),
        base_model_set=True,
    )
    transport = RecordingTransport()
    commands.transport = transport
    row = {
        "id": 4,
        "archetype": "pirate",
        "stage": "promote",
        "state": "waiting",
        "chat_id": 77,
        "message_id": 5,
        "error": None,
        "stages": {
            "train": {"outputs": {"losses": [3.0, 2.5, 2.2]}},
            "evaluate": {"outputs": EVALUATION},
        },
    }

    before = dict(row, stage="evaluate", state="running", stages={"train": row["stages"]["train"]})

    async def go() -> None:
        await commands.on_update(before)  # not evaluated yet: nothing to chart
        assert commands._charted == set()
        await commands.on_update(row)
        await commands.on_update(dict(row, state="done"))
        await asyncio.gather(*commands._charts)

    asyncio.run(go())
    [(chat, image, caption)] = transport.photos
    assert chat == 77 and caption == "pirate v3: training report"
    opened(image)


def test_the_digest_chart_counts_the_messages_of_each_hour(db: Database) -> None:
    start = NOW - timedelta(hours=24)
    fill(db, 1, ["a", "b", "c"], ts=(NOW - timedelta(hours=5, minutes=30)).timestamp())
    fill(db, 2, ["d", "e"], ts=(NOW - timedelta(hours=1, minutes=10)).timestamp())
    fill(db, 3, ["old"], ts=(NOW - timedelta(hours=30)).timestamp())  # before the period
    data = collect(db, start, NOW, JobsSettings())
    assert len(data.hourly) == 24 and sum(data.hourly) == 5
    assert data.hourly[18] == 3 and data.hourly[22] == 2  # 02:30 and 06:50 UTC
    assert data.hour_labels()[18] == "02:00"
    figure = activity_figure("day", data.hour_labels(), data.hourly)
    assert [bar.get_height() for bar in figure.axes[0].patches] == data.hourly
    opened(png(figure))


def test_the_digest_sends_its_chart_after_the_text(db: Database) -> None:
    fill(db, 1, ["a", "b"], ts=(NOW - timedelta(hours=3)).timestamp())
    texts: list[str] = []
    photos: list[tuple[bytes, str]] = []

    class Admin:
        admins = [1]

        async def to(self, chat_id: int, text: str) -> None:
            texts.append(text)

    async def photo(data: bytes, caption: str) -> None:
        assert texts, "the text goes first"
        photos.append((data, caption))

    digest = DailyDigest(db, JobsSettings(), Admin(), photo_admins=photo)
    asyncio.run(digest.run(NOW))
    assert len(texts) == 1 and len(photos) == 1
    opened(photos[0][0])


def record(db: Database, day: date, tokens: int, user: int = 5) -> None:
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    UsageStore(db, LLMSettings(), clock=lambda: when).record(
        UsageRecord(
            CallContext(user_id=user, purpose="chat"),
            "anthropic",
            "claude-sonnet-4-6",
            Usage(input_tokens=tokens, output_tokens=0),
            1.0,
        )
    )


def test_usage_week_charts_the_last_seven_days(db: Database) -> None:
    today = NOW.date()
    record(db, today, 1_000)
    record(db, today, 500)
    record(db, today - timedelta(days=2), 3_000)
    record(db, today - timedelta(days=9), 9_999)  # too old
    record(db, today, 7_777, user=6)  # someone else's
    store = UsageStore(db, LLMSettings(), clock=lambda: NOW)
    days = store.daily(5, 7)
    assert [d for d, _ in days] == [today - timedelta(days=6 - i) for i in range(7)]
    assert [t for _, t in days] == [0, 0, 0, 0, 3_000, 0, 1_500]
    figure = usage_figure("week", [d for d, _ in days], [t for _, t in days])
    assert [bar.get_height() for bar in figure.axes[0].patches] == [t for _, t in days]

    commands = AgentCommands(None, None, store, ButtonSigner(b"k" * 32), None)  # type: ignore[arg-type]
    transport = RecordingTransport()
    msg = Incoming(5, Sender(5, "Ann"), "/usage week")
    reply = asyncio.run(commands.show_usage(msg, "week", transport))
    assert reply.text.splitlines()[-1] == f"• {today:%a %d %b}: 1,500"
    [(chat, image, _)] = transport.photos
    assert chat == 5
    opened(image)


def test_the_daemon_does_not_load_matplotlib_until_it_draws() -> None:
    """matplotlib is about a second of every start (and of every end-to-end test's daemon)."""
    import subprocess
    import sys

    code = "import sys, bot.daemon.run; print('matplotlib' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
