"""Time in questions (issue 18, item 3): natural expressions become a window in the chat's time
zone, and search ranks the memories from then first without dropping the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from memory.types import Scope
from memory.when import names_only_a_time, time_spoken_of, time_window

from .conftest import run

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("question", "since", "until"),
    [
        ("What did I say about the boiler last March?", (2026, 3, 1), (2026, 4, 1)),
        ("what did I note two weeks ago", (2026, 11, 14), (2026, 11, 21)),
        ("what did I eat yesterday", (2026, 11, 30), (2026, 12, 1)),
        ("anything from 2023 about the bees", (2023, 1, 1), (2024, 1, 1)),
        ("the plumber I called on 3 June 2025", (2025, 6, 3), (2025, 6, 4)),
        # ``search_dates`` finds "April", "10" and "2023" apart: read together, one day, and
        # the weekend before it (a Monday) the Saturday and Sunday before.
        ("What did Maria do last weekend before April 10, 2023?", (2023, 4, 8), (2023, 4, 10)),
        ("what did Maria do on April 10, 2023?", (2023, 4, 10), (2023, 4, 11)),
        # A part of a date named after it: the parser read "the last week of October 2023" as
        # the week before today, and found nothing in "the week before 3 June 2025".
        ("the week before 3 June 2025", (2025, 5, 27), (2025, 6, 3)),
        ("the week after 3 June 2025", (2025, 6, 4), (2025, 6, 11)),
        ("the week of 3 June 2025", (2025, 5, 31), (2025, 6, 7)),
        ("where was I in the last week of October 2023?", (2023, 10, 25), (2023, 11, 1)),
        ("where was I the last two weeks of August 2023?", (2023, 8, 18), (2023, 9, 1)),
        ("what did I say in the first week of March?", (2026, 3, 1), (2026, 3, 8)),
        ("the second week of May 2023", (2023, 5, 8), (2023, 5, 15)),
        ("the first three days of March 2024", (2024, 3, 1), (2024, 3, 4)),
        ("what did we do the first weekend of October 2023?", (2023, 10, 7), (2023, 10, 9)),
        ("the last weekend of September 2023", (2023, 9, 30), (2023, 10, 2)),
        ("which class did I join in mid-August 2023?", (2023, 8, 10), (2023, 8, 21)),
        # "A few days ago", which the parser does not read: five to two days before today.
        ("what did I do a few days ago?", (2026, 11, 26), (2026, 11, 30)),
        ("the quote from March 2019 for the roof", (2019, 3, 1), (2019, 4, 1)),
        # The parser reads "Monday, 10" as October, the weekday dropped: a date must be the
        # weekday it names, so the expression is "on Monday".
        ("who came on Monday, 10 people?", (2026, 11, 30), (2026, 12, 1)),
        ("what did we cook on Friday, 2 of us?", (2026, 11, 27), (2026, 11, 28)),
        ("the parcel that came on Tuesday, 3 June 2025", (2025, 6, 3), (2025, 6, 4)),
        ("the concert on Sunday 5 March", (2026, 3, 5), (2026, 3, 6)),  # the date as written
        # The parser reads the article "a" as one ("a week ago"): "June a" was the first of
        # June, and "3 June a good day" lost its 3. A word it takes in beside a date ("after")
        # made the month a day: the month is what was named.
        ("was the first half of September 2022 a good month?", (2022, 9, 1), (2022, 9, 16)),
        ("was June a good month for the garden?", (2026, 6, 1), (2026, 7, 1)),
        ("was 3 June a good day for the garden?", (2026, 6, 3), (2026, 6, 4)),
        ("what did Sam resume in December 2023 after a long time?", (2023, 12, 1), (2024, 1, 1)),
        ("what did I say a week ago", (2026, 11, 21), (2026, 11, 28)),
        # Not read by the parser: "a couple of weeks" is two.
        ("what did I say a couple of weeks ago", (2026, 11, 14), (2026, 11, 21)),
        ("the boiler, a couple days ago", (2026, 11, 29), (2026, 11, 30)),
        ("what did I do the week before last?", (2026, 11, 14), (2026, 11, 21)),
        ("the month before last", (2026, 10, 1), (2026, 11, 1)),
        # A part of a month or a year named before it, which the parser reads as the whole
        # period ("early March") or not at all ("mid-2023").
        ("what did I do in early March?", (2026, 3, 1), (2026, 3, 11)),
        ("the beginning of May 2025", (2025, 5, 1), (2025, 5, 11)),
        ("the middle of June", (2026, 6, 10), (2026, 6, 21)),
        ("the roof quote from late March 2024", (2024, 3, 21), (2024, 4, 1)),
        ("what did we plan for the end of may?", (2026, 5, 21), (2026, 6, 1)),
        ("late last month", (2026, 11, 21), (2026, 12, 1)),
        ("the start of 2023", (2023, 1, 1), (2023, 5, 1)),
        ("where did we live in mid-2023?", (2023, 5, 1), (2023, 9, 1)),
        ("the end of last year", (2025, 9, 1), (2026, 1, 1)),
        ("early this year", (2026, 1, 1), (2026, 5, 1)),
        ("the second half of 2023", (2023, 7, 1), (2024, 1, 1)),
        ("the last half of March", (2026, 3, 16), (2026, 4, 1)),
        # "may" is the month beside a time word or a day, or capitalised within a sentence.
        ("what did we do in may", (2026, 5, 1), (2026, 6, 1)),
        ("was May a good month?", (2026, 5, 1), (2026, 6, 1)),
        ("on 3 may", (2026, 5, 3), (2026, 5, 4)),
        ("you may recall what I said in May", (2026, 5, 1), (2026, 6, 1)),
        # Feasts and parts of today, which the parser does not read.
        ("what did we do over Christmas?", (2025, 12, 24), (2025, 12, 27)),
        ("the presents at Christmas 2024", (2024, 12, 24), (2024, 12, 27)),
        ("plans for this Christmas", (2026, 12, 24), (2026, 12, 27)),  # to come, in December
        ("what did we eat on New Year\u2019s Eve?", (2025, 12, 31), (2026, 1, 1)),
        ("where were we for New Year 2024?", (2023, 12, 31), (2024, 1, 2)),
        ("who visited over Easter?", (2026, 4, 3), (2026, 4, 7)),
        ("Easter 2025", (2025, 4, 18), (2025, 4, 22)),  # Good Friday to Easter Monday
        ("what did we talk about this morning?", (2026, 12, 1), (2026, 12, 2)),
    ],
)
def test_natural_expressions_become_windows(question: str, since: tuple, until: tuple) -> None:
    w = time_window(question, NOW, BERLIN)
    assert w is not None
    assert (w.since, w.until) == (datetime(*since, tzinfo=BERLIN), datetime(*until, tzinfo=BERLIN))


@pytest.mark.parametrize(
    "question",
    [
        "I have 2 cats",
        "what do we do now",
        "my appointment at 10:00",
        "When did Anna go to the gym?",
        "when did I first play Cyberpunk 2077?",  # a name: a bare year this far ahead is none
        "the last week of the project",  # a part, but of no date
        "the end of the project",
        # "may" the verb, not the month (each had been a window on May).
        "what may help with the boiler?",
        "May I ask what the plumber said?",
        "it may be too early to tell",
        "I was late for work",
        # A feast's name alone names a thing.
        "where did we buy the christmas tree?",
        "ideas for a Christmas present for mum",
    ],
)
def test_ordinary_words_are_not_dates(question: str) -> None:
    assert time_window(question, NOW, BERLIN) is None


@pytest.mark.parametrize(
    ("today", "question", "saturday"),
    [
        (1, "what did we do last weekend?", 28),  # a Tuesday: the weekend just gone
        (5, "what did we do last weekend?", 28),  # a Saturday: not the one under way
        (6, "what did we do last weekend?", 28),
        (7, "what did we do last weekend?", 5),  # the Monday after
        (1, "what did I cook over the weekend", 28),
        (6, "what did I cook this weekend", 5),  # a Sunday: the one under way
        (1, "what happened the weekend before last?", 21),
    ],
)
def test_the_weekend_is_saturday_and_sunday(today: int, question: str, saturday: int) -> None:
    w = time_window(question, datetime(2026, 12, today, 12, tzinfo=UTC), BERLIN)
    assert w is not None
    first = datetime(2026, 11 if saturday > 20 else 12, saturday, tzinfo=BERLIN)
    assert (w.since, w.until) == (first, first + timedelta(days=2))
    assert w.since.weekday() == 5
    assert names_only_a_time(question, w) == ("cook" not in question)  # "do" asks of nothing


def test_yesterday_is_the_users_yesterday() -> None:
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # already 2 December in Tokyo
    tokyo = ZoneInfo("Asia/Tokyo")
    w = time_window("what did I say yesterday", late, tokyo)
    assert w is not None and w.since == datetime(2026, 12, 1, tzinfo=tokyo)
    new_york = ZoneInfo("America/New_York")  # still 1 December there
    w = time_window("what did I say yesterday", late, new_york)
    assert w is not None and w.since == datetime(2026, 11, 30, tzinfo=new_york)


def test_a_named_time_ranks_memories_from_then_first(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    memory.tz = BERLIN
    march = datetime(2026, 3, 10, 9, tzinfo=UTC)
    september = datetime(2026, 9, 5, 9, tzinfo=UTC)
    run(memory.add_memory("the boiler was serviced, the engineer came late", Scope(1), ts=march))
    for day in range(1, 6):
        run(
            memory.add_memory(
                f"the boiler is making noises about the boiler again, day {day}",
                Scope(1),
                ts=september.replace(day=day),
            )
        )
    q = "What did I say about the boiler last March?"
    hits = memory.search_sync(q, Scope(1), k=3, now=NOW)
    assert hits[0].ts == march and hits[0].provenance["when"] == "March"
    assert len(hits) == 3  # the window boosts; the rest still follow
    plain = memory.search_sync("what did I say about the boiler", Scope(1), k=3, now=NOW)
    assert march not in [h.ts for h in plain]  # without the time, the March note ranks lower


AUCKLAND = ZoneInfo("Pacific/Auckland")  # UTC+13 in December, UTC+13 in early March


@pytest.mark.parametrize(
    ("question", "local_day", "utc_day"),
    [
        # 1 December 09:00 UTC is 22:00 in Auckland. The right turn is 1 March 00:30 there (28
        # February in UTC); the other is 31 March 12:00 UTC (1 April in Auckland).
        ("what did I say about the bike last March?", (2026, 3, 1, 0, 30), (2026, 3, 31, 12)),
        # Two weeks before 1 December is the week of 14-20 November. The right turn is 14
        # November 01:00 in Auckland (13 November in UTC); the other is 20 November 12:00 UTC
        # (21 November in Auckland).
        ("what did I say about the bike two weeks ago?", (2026, 11, 14, 1), (2026, 11, 20, 12)),
    ],
)
def test_a_relative_time_in_the_chats_zone_finds_the_turn_through_chat_search(
    make_memory,  # type: ignore[no-untyped-def]
    question: str,
    local_day: tuple,
    utc_day: tuple,
) -> None:
    """The chat's own path (turns stored with ``store_turn``, found with the async ``search``
    that /recall, the memory tool and context assembly call, "now" from the memory's clock)."""
    memory = make_memory()
    memory.tz = AUCKLAND
    memory.clock = lambda: datetime(2026, 12, 1, 9, tzinfo=UTC)
    right = datetime(*local_day, tzinfo=AUCKLAND)
    # A turn inside the window only when the question is read in UTC.
    wrong = datetime(*utc_day, tzinfo=UTC)
    run(memory.store_turn(7, 1, "user", "took the bike to the shop, new brake pads", ts=right))
    run(memory.store_turn(7, 1, "user", "the bike chain came off on the bike path", ts=wrong))
    for day in range(20, 30):  # more about the bike, at other times, with more matching words
        when = datetime(2026, 6, day, 12, tzinfo=UTC)
        run(memory.store_turn(7, 1, "user", f"the bike, the bike again, ride {day}", ts=when))

    hits = run(memory.search(question, Scope(7, 1), k=3))
    assert hits[0].ts == right.astimezone(UTC)
    assert "when" in hits[0].provenance

    memory.tz = UTC  # the same question read in UTC finds the other turn first
    hits = run(memory.search(question, Scope(7, 1), k=3))
    assert hits[0].ts == wrong.astimezone(UTC)


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("What did I say about the boiler last March?", "March 2026"),
        ("the plumber I called on 3 June 2025", "3 June 2025"),
        ("anything from 2023 about the bees", "2023"),
        ("what did I note two weeks ago", "14 to 20 November 2026"),
    ],
)
def test_a_window_is_said_in_words(question: str, words: str) -> None:
    from memory.when import describe

    w = time_window(question, NOW, BERLIN)
    assert w is not None and describe(w) == words


def test_a_window_across_a_new_year_names_both_years() -> None:
    from memory.when import Window, describe

    w = Window(datetime(2025, 12, 29, tzinfo=BERLIN), datetime(2026, 1, 5, tzinfo=BERLIN), "x")
    assert describe(w) == "29 December 2025 to 4 January 2026"


@pytest.mark.parametrize(
    ("question", "only"),
    [
        ("what did we talk about yesterday?", True),
        ("two weeks ago", True),
        ("What happened last week?", True),
        ("what did I say on 3 June 2025", True),
        ("what did we talk about a couple of weeks ago?", True),
        ("What did I say about the boiler last March?", False),
        ("what did I eat yesterday", False),
        ("anything from 2023 about the bees", False),
    ],
)
def test_a_question_may_name_only_a_time(question: str, only: bool) -> None:
    window = time_window(question, NOW, UTC)
    assert window is not None
    assert names_only_a_time(question, window) is only


def test_the_window_keeps_the_words_as_written() -> None:
    """What /recall shows is the person's words, not what the parser was given."""
    for question, words in [
        ("what did I say a couple of weeks ago about the car", "a couple of weeks ago"),
        ("what did I do the week before last?", "the week before last"),
        ("where was I the last week of October 2023?", "the last week of October 2023"),
        ("the parcel that came on Tuesday, 3 June 2025", "Tuesday, 3 June 2025"),
        ("what did I say a week ago about the boiler", "a week ago"),
    ]:
        window = time_window(question, NOW, UTC)
        assert window is not None and window.expression == words


def test_a_question_naming_only_a_time_gets_what_is_kept_from_then(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Nothing to rank by but the time: the turns and notes from then, latest first, however
    unlike the words of the question; nothing from other times."""
    memory = make_memory()
    memory.clock = lambda: NOW
    yesterday = datetime(2026, 11, 30, 8, tzinfo=UTC)
    run(memory.store_turn(7, 1, "user", "the plumber fixed the leak", ts=yesterday))
    run(memory.add_memory("Maja's flight lands at 18:40", Scope(7), ts=yesterday.replace(hour=12)))
    song = "we talked about the yesterday song"
    run(memory.store_turn(7, 1, "user", song, ts=yesterday.replace(hour=20)))
    run(memory.store_turn(7, 1, "user", "what did we talk about yesterday, the song?", ts=NOW))
    run(memory.store_turn(8, 2, "user", "another chat's turn from yesterday", ts=yesterday))
    hits = run(memory.search("what did we talk about yesterday?", Scope(7, 1), k=5))
    assert [h.text for h in hits] == [
        song,
        "Maja's flight lands at 18:40",
        "the plumber fixed the leak",
    ]
    assert all("yesterday" in h.provenance["when"] for h in hits)
    assert [h.id for h in run(memory.search("what happened last week", Scope(7, 1), k=5))] == []
    # With a topic the search ranks as before, and other times' matches follow.
    topic = run(memory.search("what did the plumber fix yesterday?", Scope(7, 1), k=5))
    assert topic[0].text == "the plumber fixed the leak"


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("By the way, yesterday I went bowling and got 2 strikes!", (2022, 3, 16), (2022, 3, 17)),
        ("Two weeks ago I read Avalanche in one sitting.", (2022, 2, 28), (2022, 3, 7)),
        ("I'm starting the new job next month.", (2022, 4, 1), (2022, 5, 1)),
        ("We went to Spain in 2010, with my mother.", (2010, 1, 1), (2011, 1, 1)),
        # A question asks of a time, it does not tell of one: only the telling sentence counts.
        ("How was your week? Last Friday I went to the car show.", (2022, 3, 11), (2022, 3, 12)),
    ],
)
def test_a_memory_tells_of_the_time_its_words_name(text: str, since: tuple, until: tuple) -> None:
    w = time_spoken_of(text, datetime(2022, 3, 17, 15, tzinfo=UTC), BERLIN)
    assert w is not None
    assert (w.since, w.until) == (datetime(*since, tzinfo=BERLIN), datetime(*until, tzinfo=BERLIN))


@pytest.mark.parametrize(
    "text",
    [
        "what did we talk about yesterday?",  # asking, not telling
        "I've had them for 3 years now",  # how long, not when
        "On Friday I got great news",  # before or after it was said: not plain
        "I plan to return on July 20",
        "This weekend I'm hiking with some buddies",
        "today was great",  # the day it was said: nothing to add
        "at last it works, the last time we met was fun",
        "the bees are fine",
    ],
)
def test_a_memory_that_tells_of_no_other_time(text: str) -> None:
    assert time_spoken_of(text, datetime(2022, 3, 17, 15, tzinfo=UTC), BERLIN) is None


def test_a_memory_is_found_by_the_time_it_tells_of(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Said on 17 March, "yesterday I went bowling" tells of 16 March: a question about that
    day ranks it with what was said then, above what was said at other times. Listing what was
    said on a day ("what did we talk about on ...") keeps to what was said that day; what
    happened then ("what did I do on ...") is also what was told of it later."""
    memory = make_memory()
    memory.tz = BERLIN
    at = datetime(2022, 3, 16, 10, tzinfo=UTC)
    run(
        memory.store_turn(1, 1, "user", "I went bowling with Tom, no strikes", ts=at.replace(day=2))
    )
    run(memory.store_turn(1, 1, "user", "cooked pasta with Anna tonight", ts=at))
    run(memory.store_turn(1, 1, "user", "the dentist appointment went fine", ts=at))
    told = "By the way, yesterday I went bowling and got 2 strikes!"
    run(memory.store_turn(1, 1, "user", told, ts=at.replace(day=17)))
    hits = memory.search_sync("did I go bowling on 16 March 2022?", Scope(1, 1), k=4, now=NOW)
    assert hits[0].text == told and hits[0].provenance["when"] == "16 March 2022"
    assert "outside" in hits[-1].provenance  # 2 March: another time, after those from then
    listed = memory.search_sync("what did we talk about on 16 March 2022?", Scope(1, 1), now=NOW)
    assert sorted(h.text for h in listed) == [
        "cooked pasta with Anna tonight",
        "the dentist appointment went fine",
    ]
    listed = memory.search_sync("what did I do on 16 March 2022?", Scope(1, 1), now=NOW)
    assert [h.text for h in listed] == [  # latest first
        told,
        "the dentist appointment went fine",
        "cooked pasta with Anna tonight",
    ]
    assert len(memory.search_sync("what did I do on 16 March 2022?", Scope(1, 1), 2, now=NOW)) == 2


def test_the_times_told_of_in_memories_from_before_are_read_at_warm_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Rows stored before memory m008 are read at warm-up, in the memory's time zone."""
    from memory.db import Database, Migrations
    from memory.schema import migrations
    from memory.service import Memory
    from memory.settings import MemorySettings

    from .conftest import HashingEmbedder

    said = datetime(2022, 3, 17, 0, 30, tzinfo=UTC)  # 01:30 in Berlin, 17 March
    db = Database.open(tmp_path / "familiar.db", [Migrations("memory", migrations.steps[:7])])
    with db.transaction() as conn:
        for text in ("yesterday I went bowling", "the bees are fine"):
            conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at)"
                " VALUES (1, 'note', ?, ?, ?, 0)",
                (text, text, said.timestamp()),
            )
    db.close()
    db = Database.open(tmp_path / "familiar.db", [migrations])
    try:
        memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
        memory.tz = BERLIN
        memory.warm_sync()
        with db.read() as conn:
            rows = conn.execute(
                "SELECT text, about_since, about_until, about_read FROM memories ORDER BY id"
            ).fetchall()
        day = datetime(2022, 3, 16, tzinfo=BERLIN)
        assert rows == [
            ("yesterday I went bowling", day.timestamp(), (day + timedelta(days=1)).timestamp(), 1),
            ("the bees are fine", None, None, 1),
        ]
    finally:
        db.close()


def test_the_times_told_of_are_read_again_in_a_new_time_zone(make_memory) -> None:  # type: ignore[no-untyped-def]
    """``jobs.timezone`` set after the first start: "yesterday" is read again as the day
    before in the new zone."""
    said = datetime(2022, 3, 17, 0, 30, tzinfo=UTC)  # 17 March in Berlin, 16 March in New York
    memory = make_memory()
    run(memory.add_memory("yesterday I went bowling", Scope(1), ts=said))

    def told() -> float:
        with memory.db.read() as conn:
            row = conn.execute("SELECT about_since FROM memories WHERE kind = 'note'").fetchone()
            return float(row[0])

    assert told() == datetime(2022, 3, 16, tzinfo=UTC).timestamp()
    # A document's "last year" counts from when it was written, which is not known; a lesson
    # is no event of the person's life: neither is read.
    for kind in ("document", "lesson"):
        run(memory.add_memory(f"Revenue grew last year, {kind}", Scope(1), kind, ts=said))
    with memory.db.read() as conn:
        assert conn.execute(
            "SELECT about_since, about_read FROM memories WHERE kind != 'note'"
        ).fetchall() == [(None, 1), (None, 1)]
    memory.tz = BERLIN
    memory.warm_sync()
    assert told() == datetime(2022, 3, 16, tzinfo=BERLIN).timestamp()
    memory.tz = ZoneInfo("America/New_York")
    memory.warm_sync()
    assert told() == datetime(2022, 3, 15, tzinfo=memory.tz).timestamp()
    from memory import store

    assert not store.times_told_in(memory.db, memory.tz)  # the same zone: nothing to read again
    assert store.times_told_in(memory.db, BERLIN)


SYDNEY = ZoneInfo("Australia/Sydney")


@pytest.mark.parametrize(
    ("today", "tz", "question", "since", "until"),
    [
        ((2023, 11, 20), BERLIN, "what did we do last summer?", (2023, 6, 1), (2023, 9, 1)),
        ((2023, 7, 10), BERLIN, "what did we do last summer?", (2022, 6, 1), (2022, 9, 1)),
        ((2023, 7, 10), BERLIN, "plans for this summer", (2023, 6, 1), (2023, 9, 1)),
        ((2023, 11, 20), BERLIN, "this summer", (2023, 6, 1), (2023, 9, 1)),  # just gone
        ((2023, 11, 20), BERLIN, "this winter", (2023, 12, 1), (2024, 3, 1)),  # to come
        ((2023, 3, 10), BERLIN, "this winter", (2022, 12, 1), (2023, 3, 1)),
        ((2024, 1, 10), BERLIN, "next winter", (2024, 12, 1), (2025, 3, 1)),
        ((2023, 11, 20), BERLIN, "where was I in summer 2021?", (2021, 6, 1), (2021, 9, 1)),
        ((2023, 11, 20), BERLIN, "the autumn of 2019", (2019, 9, 1), (2019, 12, 1)),
        ((2023, 11, 20), BERLIN, "last fall", (2022, 9, 1), (2022, 12, 1)),
        ((2023, 11, 20), BERLIN, "winter 2023", (2022, 12, 1), (2023, 3, 1)),  # its January's
        # A part of a season: its first, middle or last month.
        ((2023, 11, 20), BERLIN, "late last summer", (2023, 8, 1), (2023, 9, 1)),
        ((2023, 11, 20), BERLIN, "the end of summer 2021", (2021, 8, 1), (2021, 9, 1)),
        ((2023, 11, 20), BERLIN, "early next spring", (2024, 3, 1), (2024, 4, 1)),
        ((2023, 11, 20), BERLIN, "mid winter 2023", (2023, 1, 1), (2023, 2, 1)),
        ((2023, 11, 20), SYDNEY, "what did we do last summer?", (2022, 12, 1), (2023, 3, 1)),
        ((2023, 11, 20), SYDNEY, "where was I in winter 2023?", (2023, 6, 1), (2023, 9, 1)),
    ],
)
def test_seasons_are_three_months_of_the_users_hemisphere(
    today: tuple, tz: ZoneInfo, question: str, since: tuple, until: tuple
) -> None:
    w = time_window(question, datetime(*today, 12, tzinfo=UTC), tz)
    assert w is not None
    assert (w.since, w.until) == (datetime(*since, tzinfo=tz), datetime(*until, tzinfo=tz))


@pytest.mark.parametrize(
    "question", ["did I fall off the bike?", "what are my plans for the summer?"]
)
def test_a_season_word_alone_is_no_window(question: str) -> None:
    assert time_window(question, NOW, BERLIN) is None


def test_the_times_told_of_are_read_again_when_the_reading_changes(make_memory) -> None:  # type: ignore[no-untyped-def]
    """A store whose times told of were read before a change to how words are read (kept with
    its zone alone, as the first reading kept it) has them read again at warm-up: "early last
    year" had been the whole year."""
    from memory import store

    said = datetime(2024, 6, 1, 12, tzinfo=UTC)
    memory = make_memory()
    memory.tz = BERLIN
    run(memory.add_memory("Early last year I moved to Leeds.", Scope(1), ts=said))
    memory.warm_sync()
    with memory.db.transaction() as conn:  # as the first reading left it
        conn.execute("UPDATE memory_times_zone SET zone = 'Europe/Berlin'")
        conn.execute(
            "UPDATE memories SET about_since = ?, about_until = ?",
            (
                datetime(2023, 1, 1, tzinfo=BERLIN).timestamp(),
                datetime(2024, 1, 1, tzinfo=BERLIN).timestamp(),
            ),
        )
    memory.warm_sync()
    with memory.db.read() as conn:
        assert conn.execute("SELECT about_since, about_until FROM memories").fetchone() == (
            datetime(2023, 1, 1, tzinfo=BERLIN).timestamp(),
            datetime(2023, 5, 1, tzinfo=BERLIN).timestamp(),
        )
    assert not store.times_told_in(memory.db, BERLIN)  # read by this reading: not again
