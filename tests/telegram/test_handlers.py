"""UpdateHandler with a real core and SQLite: access, groups, invites, feedback presses, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import time_machine
from telegram import Update

from tests.telegram.helpers import (
    ADMIN,
    ALLOWED,
    BOT_ID,
    BOT_NAME,
    Rig,
    build_rig,
    callback,
    message,
)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return build_rig(tmp_path)


def handle(rig: Rig, payload: dict) -> None:
    asyncio.run(rig.handler.handle(Update.de_json(payload, None)))


def buttons_of(rig: Rig, index: int = -1) -> list[str]:
    return [b.data for row in rig.transport.sent[index][1].buttons for b in row]


def test_allowed_user_is_answered_with_feedback_buttons(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    assert [m.text for m in rig.answerer.seen] == ["hello"]
    assert len(buttons_of(rig)) == 4
    assert rig.count("feedback_answers") == 1


def test_stranger_gets_one_refusal_and_only_an_audit_row(rig: Rig) -> None:
    for i in range(3):
        handle(rig, message(42, f"secret {i}", update_id=i + 1))
    assert rig.answerer.seen == []
    assert len(rig.transport.sent) == 1 and "private assistant" in rig.transport.texts[0]
    assert rig.count("access_audit") == 3 and rig.count("feedback_answers") == 0


def test_votes_are_one_per_user_and_change(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    up, down = buttons_of(rig)[:2]
    handle(rig, callback(ALLOWED, up, update_id=2))
    handle(rig, callback(ALLOWED, up, update_id=3))
    handle(rig, callback(ALLOWED, down, update_id=4))
    with rig.db.read() as conn:
        assert conn.execute("SELECT user_id, rating FROM feedback").fetchall() == [(ALLOWED, -1)]
    assert [t for _, t in rig.callbacks] == [
        "Thanks for the 👍.",
        "You already voted 👍.",
        "Changed to 👎.",
    ]


def test_foreign_and_forged_presses_change_nothing(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    up = buttons_of(rig)[0]
    handle(rig, callback(ADMIN, up, update_id=2))  # the admin's own chat: signature is per chat
    handle(rig, callback(ALLOWED, up[:-2] + "zz", update_id=3))
    handle(rig, callback(ALLOWED, "fb:", update_id=4))
    handle(rig, callback(42, up, update_id=5))  # a stranger
    handle(rig, callback(ALLOWED, up, chat_id=ADMIN, update_id=6))  # someone else's private chat
    assert rig.count("feedback") == 0
    assert len(rig.callbacks) == 5 and all(text for _, text in rig.callbacks)


def test_thumbs_down_reason_is_stored(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    handle(rig, callback(ALLOWED, buttons_of(rig)[1], update_id=2))
    asked_id = len(rig.transport.sent)  # RecordingTransport ids are 1-based positions
    assert "What was wrong" in rig.transport.texts[-1]
    handle(
        rig,
        message(
            ALLOWED,
            "it was wrong",
            update_id=3,
            reply_to={
                "message_id": asked_id,
                "date": 1,
                "chat": {"id": ALLOWED, "type": "private"},
            },
        ),
    )
    with rig.db.read() as conn:
        assert conn.execute("SELECT reason FROM feedback").fetchall() == [("it was wrong",)]
    assert len(rig.answerer.seen) == 1  # the reason did not go to the assistant


def test_regenerate_answers_the_same_prompt_again(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    regen = buttons_of(rig)[2]
    handle(rig, callback(ALLOWED, regen, update_id=2))
    asyncio.run(rig.feedback.drain())
    assert [m.text for m in rig.answerer.seen] == ["hello", "hello"]


def test_stale_button_expires(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    up = buttons_of(rig)[0]
    with rig.db.transaction() as conn:
        conn.execute("UPDATE feedback_answers SET created_at = created_at - 40 * 86400")
    handle(rig, callback(ALLOWED, up, update_id=2))
    assert rig.callbacks[-1][1] == "This button has expired." and rig.count("feedback") == 0


def test_invite_codes_are_one_time(rig: Rig) -> None:
    handle(rig, message(ADMIN, "/invite"))
    code = rig.transport.texts[-1].split("Invite code: ")[1].split()[0]
    handle(rig, message(300, f"/start {code}", update_id=2))
    assert "Hello" in rig.transport.texts[-1]
    handle(rig, message(300, "now I can talk", update_id=3))
    assert rig.answerer.seen[-1].text == "now I can talk"
    handle(rig, message(301, f"/start {code}", update_id=4))  # spent
    assert "not valid" in rig.transport.texts[-1]
    handle(rig, message(ALLOWED, "/invite", update_id=5))
    assert "admins only" in rig.transport.texts[-1]


def test_invite_codes_expire(rig: Rig) -> None:
    with time_machine.travel("2030-01-01 00:00", tick=False) as traveller:
        handle(rig, message(ADMIN, "/invite"))
        code = rig.transport.texts[-1].split("Invite code: ")[1].split()[0]
        traveller.shift(3601)
        handle(rig, message(300, f"/start {code}", update_id=2))
    assert "not valid" in rig.transport.texts[-1]


def test_groups_need_an_admin_and_an_address(rig: Rig) -> None:
    group = -1001
    handle(rig, message(ALLOWED, f"@{BOT_NAME} hi", chat_id=group, chat_type="supergroup"))
    assert rig.answerer.seen == [] and "admin" in rig.transport.texts[-1]
    handle(rig, message(ADMIN, "/group on", chat_id=group, chat_type="supergroup", update_id=2))
    handle(
        rig,
        message(
            ALLOWED, "chatting among ourselves", chat_id=group, chat_type="supergroup", update_id=3
        ),
    )
    assert rig.answerer.seen == []
    handle(
        rig,
        message(
            ALLOWED,
            f"@{BOT_NAME} what time is it",
            chat_id=group,
            chat_type="supergroup",
            update_id=4,
        ),
    )
    reply = {
        "message_id": 9,
        "date": 1,
        "chat": {"id": group, "type": "supergroup"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "F"},
    }
    handle(
        rig,
        message(
            ALLOWED,
            "and tomorrow?",
            chat_id=group,
            chat_type="supergroup",
            update_id=5,
            reply_to=reply,
        ),
    )
    handle(
        rig, message(ALLOWED, "/help@OtherBot", chat_id=group, chat_type="supergroup", update_id=6)
    )
    assert [(m.text, m.chat_id, m.is_group, m.speaker) for m in rig.answerer.seen] == [
        ("what time is it", group, True, "U"),  # the sender's first name labels the turn
        ("and tomorrow?", group, True, "U"),
    ]


def test_an_error_is_reported_to_the_user_and_once_to_admins(rig: Rig) -> None:
    async def broken(msg, transport):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    rig.assistant.answer_text = broken
    handle(rig, message(ALLOWED, "a", update_id=1))
    handle(rig, message(ALLOWED, "b", update_id=2))
    to_user = [t for c, r in rig.transport.sent if c == ALLOWED for t in [r.text]]
    to_admin = [r.text for c, r in rig.transport.sent if c == ADMIN]
    assert len(to_user) == 2 and all("error" in t for t in to_user)
    assert len(to_admin) == 1 and "RuntimeError" in to_admin[0]


def reaction(
    user_id: int,
    message_id: int,
    new: list[str],
    old: list[str] | tuple[str, ...] = (),
    update_id: int = 50,
    chat_id: int | None = None,
) -> dict:
    chat = chat_id if chat_id is not None else user_id
    return {
        "update_id": update_id,
        "message_reaction": {
            "chat": {"id": chat, "type": "private" if chat > 0 else "group"},
            "message_id": message_id,
            "user": {"id": user_id, "is_bot": False, "first_name": "U"},
            "date": 1,
            "old_reaction": [{"type": "emoji", "emoji": e} for e in old],
            "new_reaction": [{"type": "emoji", "emoji": e} for e in new],
        },
    }


def votes(rig: Rig) -> list[tuple[int, int]]:
    with rig.db.read() as conn:
        return conn.execute("SELECT user_id, rating FROM feedback").fetchall()


def test_a_reaction_on_an_answer_is_its_vote_and_taking_it_back_takes_the_vote(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    answer_id = len(rig.transport.sent)  # RecordingTransport ids are 1-based positions
    handle(rig, reaction(ALLOWED, answer_id, ["👍"], update_id=2))
    assert votes(rig) == [(ALLOWED, 1)]
    handle(rig, reaction(ALLOWED, answer_id, ["❤️"], old=["👍"], update_id=3))  # still liked
    assert votes(rig) == [(ALLOWED, 1)]
    handle(rig, reaction(ALLOWED, answer_id, [], old=["❤️"], update_id=4))  # taken back
    assert votes(rig) == []
    handle(rig, reaction(ALLOWED, answer_id, ["👎"], update_id=5))
    assert votes(rig) == [(ALLOWED, -1)]
    assert "What was wrong" in rig.transport.texts[-1]  # as the 👎 button asks
    handle(rig, reaction(ALLOWED, answer_id, ["😂"], old=["👎"], update_id=6))  # neither: back
    assert votes(rig) == []


def test_reactions_that_are_no_vote_or_not_on_an_answer_change_nothing(rig: Rig) -> None:
    handle(rig, message(ALLOWED, "hello"))
    answer_id = len(rig.transport.sent)
    handle(rig, reaction(ALLOWED, answer_id, ["😂"], update_id=2))  # neither liked nor not
    handle(rig, reaction(ALLOWED, answer_id, ["👍", "👎"], update_id=3))  # both at once
    handle(rig, reaction(ALLOWED, answer_id + 7, ["👍"], update_id=4))  # not an answer
    handle(rig, reaction(42, answer_id, ["👍"], update_id=6, chat_id=ALLOWED))  # a stranger
    handle(rig, reaction(ADMIN, answer_id, ["👍"], update_id=7, chat_id=ALLOWED))  # not theirs
    assert votes(rig) == []
    assert len(rig.transport.sent) == 1  # and nobody was told anything
    with rig.db.transaction() as conn:
        conn.execute("UPDATE feedback_answers SET created_at = created_at - 40 * 86400")
    handle(rig, reaction(ALLOWED, answer_id, ["👍"], update_id=8))  # too old, as a button
    assert votes(rig) == []
