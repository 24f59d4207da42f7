"""Property-based: random and hostile updates and callback data never raise out of the handler,
and nothing a stranger sends writes anything but an audit row or reaches the assistant."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from itertools import count
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update

from bot.core.feedback import Feedback
from tests.telegram.helpers import ALLOWED, Rig, build_rig, callback, message

STRANGER = 4242
TABLES = [
    "feedback",
    "feedback_answers",
    "feedback_reason_prompts",
    "access_users",
    "access_invites",
    "access_groups",
]

hostile_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "/start",
            "/start AAAA",
            "/invite",
            "/group on",
            "/forgetme",
            "/help@x",
            "/",
            "//",
            "/start " + "A" * 5000,
            "@FamiliarTestBot",
            "\x00",
            "🔁" * 50,
        ]
    ),
)
button_data = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"fb:[udrpx][0-9a-z]{0,14}\.[A-Za-z0-9_-]{0,12}", fullmatch=True),
    st.sampled_from(["fb:", "fb:u1.", ":::", "fb:u" + "9" * 40 + ".AAAAAAAAAAA"]),
)
chat_type = st.sampled_from(["private", "group", "supergroup", "channel"])
ids = st.one_of(st.just(ALLOWED), st.just(STRANGER), st.integers(-(2**40), 2**40))


def updates(sender: st.SearchStrategy[int]) -> st.SearchStrategy[dict]:
    return st.one_of(
        st.builds(
            lambda u, t, c, ct, n: message(u, t, chat_id=c, chat_type=ct, update_id=n),
            sender,
            hostile_text,
            ids,
            chat_type,
            st.integers(1, 10**9),
        ),
        st.builds(
            lambda u, d, c, ct, m, n: callback(
                u, d, chat_id=c, chat_type=ct, message_id=m, update_id=n
            ),
            sender,
            button_data,
            ids,
            chat_type,
            st.integers(1, 10**6),
            st.integers(1, 10**9),
        ),
    )


_examples = count()
# tmp_path is made once per test, not per example: each example takes a fresh folder inside it.
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextlib.contextmanager
def _fresh_rig(tmp_path: Path) -> Iterator[Rig]:
    folder = tmp_path / f"example-{next(_examples)}"
    folder.mkdir()
    rig = build_rig(folder)
    try:
        yield rig
    finally:
        rig.db.close()


@FUZZ
@given(batch=st.lists(updates(ids), min_size=1, max_size=8))
def test_no_update_raises(tmp_path: Path, batch: list[dict]) -> None:
    with _fresh_rig(tmp_path) as rig:
        _no_update_raises(rig, batch)


def _no_update_raises(rig: Rig, batch: list[dict]) -> None:

    async def run() -> None:
        for payload in batch:
            await rig.handler.handle(Update.de_json(payload, None))
        await rig.feedback.drain()

    asyncio.run(run())  # an exception escaping handle() fails the property
    queries = [p for p in batch if "callback_query" in p]
    assert len(rig.callbacks) == len(queries)  # every press was answered


@FUZZ
@given(
    batch=st.lists(updates(st.just(STRANGER)), min_size=1, max_size=8),
    with_real_buttons=st.booleans(),
)
def test_a_stranger_writes_nothing_but_audit_rows(
    tmp_path: Path, batch: list[dict], with_real_buttons: bool
) -> None:
    with _fresh_rig(tmp_path) as rig:
        _stranger_writes_nothing(rig, batch, with_real_buttons)


def _stranger_writes_nothing(rig: Rig, batch: list[dict], with_real_buttons: bool) -> None:

    async def run() -> None:
        if with_real_buttons:  # a genuine answer exists whose buttons the stranger may replay
            await rig.handler.handle(
                Update.de_json(message(ALLOWED, "hello", update_id=10**10), None)
            )
            real = [b.data for row in rig.transport.sent[-1][1].buttons for b in row]
            for i, data in enumerate(real):
                batch.append(callback(STRANGER, data, chat_id=ALLOWED, update_id=i + 1))
                batch.append(callback(STRANGER, data, update_id=i + 100))
        before = {t: rig.count(t) for t in TABLES}
        seen = len(rig.answerer.seen)
        for payload in batch:
            await rig.handler.handle(Update.de_json(payload, None))
        await rig.feedback.drain()
        assert {t: rig.count(t) for t in TABLES} == before
        assert len(rig.answerer.seen) == seen

    asyncio.run(run())


def test_feedback_parse_refuses_what_it_did_not_sign(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    fb: Feedback = rig.feedback
    good = fb.data("u", 12345, 77).removeprefix("fb:")
    assert fb.parse(good, 77) == ("u", 12345)
    assert fb.parse(good, 78) is None
    assert fb.parse(good.replace("u", "d", 1), 77) is None
