"""Time in questions: "what did I say about the boiler last March?", "two weeks ago" become a
time window, read in the chat's time zone by ``dateparser`` (a maintained parser; no regexes of
our own for dates).

``dateparser.search.search_dates`` finds the expression and its date; ``DateDataParser`` says
how precise it is (a day, a week, a month, a year), which sets the window's width. Two guards
keep ordinary words from becoming dates: the expression must hold a time word or a year/date
written in digits ("we" parses as Wednesday, "at 10:00" as today), and a time of day alone is
not a window. A date must be the weekday it names unless it has its month or year
(``_agreeing``: "on Monday, 10 people" is not October). Articles are masked before the parser
sees them (it reads "a" as one), and words it takes in at an expression's ends that are not
time words are dropped when the rest still holds the date (``_trimmed``: "September 2022 a"
and "December 2023 after" were read as days). "Last weekend", which the parser does not know,
is the Saturday and Sunday before (``_weekend``; "the weekend before last" the one before),
"a couple of weeks" two weeks, "the week before last" two weeks ago, "a few days ago" five
to two days ago (``_few``); "last summer", "this winter", "summer 2023" are three months, by
the hemisphere of the chats' time zone (``_season``: the parser reads "summer 2023" as the
year). A part of a date named after it ("the last week of October 2023", "the first weekend of August", "the week
before 3 June", "mid-August"), which the parser misreads ("last week" as the week before today)
or does not read, is masked, the date read, and the window narrowed to the part
(``_narrowed``); so is a part named before it ("early March", "the end of last year",
``_edged``); seasons, feasts ("over Christmas") and "this morning" are read by hand; "may" the
verb is masked; a bare year far ahead ("Cyberpunk 2077") is a name. A window keeps the words as
written (``_where``). These few phrases are matched by hand because the parser has no
notion of them; every date itself is the parser's. The window is used as a boost, not a
filter (``Memory.search_sync``): hits inside it rank first, the rest follow, so a wrong parse
costs order, never recall. A question that names only a time ("what did we talk about
yesterday?", ``names_only_a_time``) has nothing to rank by: it gets what is kept from then,
latest first, and nothing from other times; what was told of then too unless it asks what was
said ("what did I do yesterday?" against "what did we talk about yesterday?").

A memory's own words may tell of another time than the one it was said at: "yesterday I went
bowling", said on 17 March, tells of 16 March (``time_spoken_of``, read once per row when it is
stored; memory m008). A question's window finds such a memory too. Only words whose direction
is plain count ("yesterday", "last week", "two weeks ago", "next month", a year); a question
tells of nothing.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import cache
from importlib import resources
from pathlib import Path

from dateparser.date import DateDataParser
from dateparser.search import search_dates
from dateutil.easter import easter

from memory.text import STOPWORDS, sentences, words

_MONTHS = frozenset(
    """january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec""".split()
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CUES = (
    _MONTHS
    | frozenset(_WEEKDAYS)
    | frozenset(
        """yesterday today tonight ago last week weeks month months year years weekend
        fortnight day days couple summer winter spring autumn christmas xmas easter halloween
        valentine valentines morning afternoon evening""".split()
    )
)
# Words that ask about a time without naming a topic: "what did I say two weeks ago?"
# Words that ask what was said, not what happened: "what did we talk about yesterday?" lists what
# was said then; "what did I do yesterday?" also what was told of then, later.
_SPEECH = frozenset(
    """say said saying tell told talk talked talking speak spoke chat chatted mention mentioned
    discuss discussed write wrote note noted""".split()
)
_ASKING = _SPEECH | frozenset(
    """happen happened happening go going went new remember anything something everything
    us""".split()
)
_DIGIT_DATE = re.compile(r"\b(19|20)\d\d\b|\d{1,4}[-/.]\d{1,2}([-/.]\d{1,4})?")
_SETTINGS = {"PREFER_DATES_FROM": "past", "RETURN_AS_TIMEZONE_AWARE": False}
_SEPARATOR = re.compile(r"[\s,]*")  # between parts of one date: "April 10, 2023"
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_UNITS = "second|minute|hour|day|week|fortnight|month|year|decade"  # of time, as counted
# "a"/"an" as an article: the parser reads "a" as one ("a week ago"), so in "was 3 June a good
# day" it found "June a", the first of June. Not before a unit of time or a count of them.
_ARTICLE = re.compile(rf"\b(an?)\b(?!\s+(few|couple|{_UNITS})s?\b)", re.IGNORECASE)
# "a couple of weeks ago", which the parser does not read: "2 weeks ago", padded to its length.
_COUPLE = re.compile(rf"\ba couple (of )?(?=({_UNITS})s?\b)", re.IGNORECASE)
# "the week (month, year) before last", which the parser does not read: "2 weeks ago".
_BEFORE_LAST = re.compile(r"\bthe (week|month|year) before last\b", re.IGNORECASE)
# A part of a date named after it: "the last week of October 2023", "the first weekend of
# August", "the week before 3 June", "mid-August". The parser reads "last week" there as the
# week before today, or finds no date at all; the part is masked, the date read, and the window
# narrowed to the part (``_narrowed``).
_COUNTS = {"two": 2, "three": 3, "four": 4, "2": 2, "3": 3, "4": 4}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1, "final": -1}
_PART = re.compile(
    rf"\b(?:the\s+)?(?:(?P<ordinal>{'|'.join(_ORDINALS)})\s+)?(?:(?P<count>{'|'.join(_COUNTS)})\s+)?"
    r"(?P<unit>weekend|week|weeks|fortnight|days)\s+(?P<relation>of|before|after)\s+"
    rf"(?=(?:the\s+)?(?:\d|(?:{'|'.join(sorted(_MONTHS, key=len, reverse=True))})\b))",
    re.IGNORECASE,
)
_PART_OF_SOMETHING = re.compile(
    r"(last|first|final|next|this)\s+(week|weekend|month|year)s?$", re.I
)
# The part of a month, a year or a season named before it: "early March", "mid-2023", "the
# end of last year", "the first half of September", "late last summer". The parser reads only
# the period (it finds nothing in "mid-August"); the words are masked and the window narrowed
# (``_edged``): a month's first ten days, its 10th to 20th, from its 21st; a year's first, middle
# or last four months; a season's first, middle or last month; a half, half.
_EDGE_WORDS = {
    "early": "early", "beginning": "early", "start": "early", "first": "early",
    "mid": "mid", "middle": "mid",
    "late": "late", "end": "late", "second": "late", "last": "late",
}  # fmt: skip
_EDGE_OF = (
    r"(?:(?P<early>early|late)[-\s]+|mid-?\s*"
    r"|(?:the\s+)?(?:(?P<part>beginning|start|middle|end)|(?P<half>first|second|last)\s+half)"
    r"\s+of\s+(?:the\s+)?)"
)
_EDGE = re.compile(
    rf"\b{_EDGE_OF}"
    rf"(?=(?:{'|'.join(sorted(_MONTHS, key=len, reverse=True))}|(?:19|20)\d\d"
    r"|(?:last|this|next|past)\s+(?:year|month))\b)",
    re.IGNORECASE,
)
_EDGE_BEFORE = re.compile(rf"\b{_EDGE_OF}$", re.IGNORECASE)  # before a season's name
# "a few days ago", which the parser does not read: from five of them to two before today.
_FEW = re.compile(r"\ba few (day|week|month|year)s ago\b", re.IGNORECASE)
_FEW_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_FAR_YEARS = 10  # a bare year further ahead than this is a name ("Cyberpunk 2077"), not a time


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    expression: str  # the words it was read from


def _is_temporal(expression: str) -> bool:
    words = set(re.findall(r"[a-z]+", expression.lower()))
    return bool(words & _CUES) or bool(_DIGIT_DATE.search(expression))


# Prepositions that make the word after them a time ("in May", "over Christmas").
_TIME_PREPOSITIONS = (
    "at over on for during since before after until till by around in of from to".split()
)
# "may" is the month beside a day ("3 May", "May 3"), after a preposition or a word that names
# a time ("in May", "early May", "mid-may"), or capitalised within a sentence ("was May a good
# month?"); otherwise it is the verb ("what may help with the boiler?", "May I ask...") and is
# masked.
_MAY = re.compile(r"\bmay\b(?!\s*\d)", re.IGNORECASE)
_MAY_AFTER = frozenset(_TIME_PREPOSITIONS) | {"last", "this", "next", "past", "early", "late"}
_WORD_BEFORE = re.compile(r"(\S*?)(-|\s+)$")  # the word before a match, and what joins them


def _mask_may(query: str) -> str:
    def masked(m: re.Match[str]) -> str:
        before = _WORD_BEFORE.search(query[: m.start()])
        word = before.group(1).lower() if before else ""
        if word in _MAY_AFTER or word == "mid" or re.fullmatch(r"\d+(st|nd|rd|th)?", word):
            return m.group()
        if m.group() == "May" and word and word[-1] not in ".!?":
            return m.group()  # capitalised within a sentence: the month
        return "_" * len(m.group())

    return _MAY.sub(masked, query)


def time_window(query: str, now: datetime, tz: tzinfo) -> Window | None:
    """The time the question asks about, as an aware [since, until) window; None if it names
    none. ``now`` is any aware time; relative expressions count from it, in ``tz``."""
    query = _mask_may(query)
    if not _is_temporal(query):  # most questions name no time: skip the parser (~30 ms)
        return None
    local_now = now.astimezone(tz).replace(tzinfo=None)
    season = _season(query, local_now, tz) or _holiday(query, local_now, tz)
    if season is not None:  # the parser reads "summer 2023" as the year, "Christmas" as nothing
        return season
    settings = {**_SETTINGS, "RELATIVE_BASE": local_now}
    # Rewritten for the parser at the same length, so what it finds is where it was written.
    asked = query
    query = _COUPLE.sub(lambda m: "2".ljust(len(m.group())), query)
    query = _BEFORE_LAST.sub(lambda m: "2" + f"{m[1]}s ago".rjust(len(m.group()) - 1), query)
    part = _PART.search(query)
    query = _blanked(query, part)
    edge = _EDGE.search(query)
    query = _blanked(query, edge)
    query = _ARTICLE.sub(lambda m: "_" * len(m.group()), query)
    try:
        found = search_dates(query, languages=["en"], settings=settings) or []
    except Exception:  # the parser on odd input: no window rather than no answer
        return None
    parser = DateDataParser(languages=["en"], settings=settings)
    for expression, when, period in _joined(query, found, parser):
        if not _is_temporal(expression):
            continue
        expression, when, period = _trimmed(expression, when, period, parser)
        agreed = _agreeing(expression, when, period, parser)
        if agreed is None:
            continue
        expression, when, period = agreed
        if period == "year" and expression.strip().isdigit():
            if when.year > local_now.year + _FAR_YEARS:
                continue
        start, end = _span(when, period)
        at, to = _where(expression, query)
        written = asked[at:to] if at >= 0 else expression  # the words as written
        if _PART_OF_SOMETHING.match(expression) and re.match(r"\s+of\b", query[to:]):
            continue  # "the last week of the project" is not last week
        if part is not None and at >= part.end() and not query[part.end() : at].strip(" ,"):
            start, end = _narrowed(part, start, end)
            written = asked[part.start() : to]
        elif edge is not None and period in ("month", "year") and _just_after(edge, at, query):
            start, end = _edged(edge, start, end, period)
            written = asked[edge.start() : to]
        return Window(start.replace(tzinfo=tz), end.replace(tzinfo=tz), written)
    return (
        _weekend(asked, local_now, tz) or _few(asked, local_now, tz) or _today(asked, local_now, tz)
    )


# Which reading of a memory's words the times told of in the store are by: a new one (words
# read that were not, or read otherwise) has them all read again at warm-up
# (``store.times_told_in``). 2: parts of a month, year or season ("early last year"), feasts
# ("last Christmas"); "may" the verb.
READING = 2

# A memory's own words about a time count only where their direction is plain: "yesterday",
# "last week", "two weeks ago", "next month", a year in digits. "On Friday", "July 20", "this
# weekend" or "for 3 years" in a statement may be before or after it, or no time at all.
_SPOKEN = re.compile(r"\b(ago|last|yesterday|next|tomorrow|past|(19|20)\d\d)\b", re.IGNORECASE)
_SPOKEN_CHARS = 2_000  # of a memory's text read for a time: where such words are


def time_spoken_of(text: str, said: datetime, tz: tzinfo) -> Window | None:
    """The time a memory's words place what it tells at, when that is not the time it was said:
    "yesterday I went bowling", said on 17 March, tells of 16 March. A question's window finds
    such a memory too (``Filters.about``). None when the words name no time, or the day it was
    said. A question tells of nothing ("what did we talk about yesterday?"): its sentences
    are not read."""
    told = " ".join(p for p in sentences(text[:_SPOKEN_CHARS], 64) if not p.endswith("?"))
    if not _SPOKEN.search(told):  # most memories: no parse (milliseconds each)
        return None
    window = time_window(told, said, tz)
    if window is None or not _SPOKEN.search(window.expression):
        return None
    if window.since <= said < window.until:
        return None
    return window


def _blanked(query: str, found: re.Match[str] | None) -> str:
    """``query`` with what ``found`` matched blanked out, at the same length."""
    if found is None:
        return query
    return query[: found.start()] + " " * len(found.group()) + query[found.end() :]


def _where(expression: str, query: str) -> tuple[int, int]:
    """Where ``expression`` is in ``query`` (the parser collapses spaces); (-1, -1) if nowhere.
    ``query`` is the question rewritten for the parser at its length, so the span is also where
    the person's own words are ("a couple of weeks ago" for the parser's "2 weeks ago")."""
    pattern = r"\s+".join(re.escape(w) for w in expression.split())
    m = re.search(pattern, query, re.IGNORECASE) if pattern else None
    return m.span() if m else (-1, -1)


def _just_after(found: re.Match[str], at: int, query: str) -> bool:
    return at >= found.end() and not query[found.end() : at].strip()


def _edged(
    edge: re.Match[str], start: datetime, end: datetime, period: str
) -> tuple[datetime, datetime]:
    """The part of the month, year or season [start, end) that ``edge`` names (``_EDGE``)."""
    named = (edge["early"] or edge["part"] or edge["half"] or "mid").lower()
    which = _EDGE_WORDS[named]
    if edge["half"]:
        if period == "year":
            middle = _months_on(start, 6)
        else:
            middle = (start + (end - start) / 2).replace(hour=0, minute=0, second=0, microsecond=0)
        return (start, middle) if which == "early" else (middle, end)
    if period == "month":
        cuts = [start, start + timedelta(days=10), start + timedelta(days=20), end]
        if which == "mid":  # the 10th to the 20th
            return cuts[1] - timedelta(days=1), cuts[2]
    else:  # a year by four months, a season by months
        months = 4 if period == "year" else 1
        cuts = [*(_months_on(start, n * months) for n in range(3)), end]
    i = {"early": 0, "mid": 1, "late": 2}[which]
    return cuts[i], cuts[i + 1]


def _months_on(start: datetime, n: int) -> datetime:
    month = start.month - 1 + n
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def _narrowed(part: re.Match[str], start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The part of [start, end) that ``part`` names: "the first week of" its first seven days,
    "the last two weeks of" its last fourteen, "the week before" the seven days before it, "the
    first weekend of" its first Saturday and Sunday; "the week of" a day is the week around it."""
    unit, relation = part["unit"].lower(), part["relation"].lower()
    ordinal = _ORDINALS.get((part["ordinal"] or "").lower(), 0)
    count = _COUNTS.get((part["count"] or "").lower(), 1)
    if unit == "weekend":
        if relation == "after" or (relation == "of" and ordinal >= 0):
            base = start if relation == "of" else end
            saturday = base + timedelta(days=(5 - base.weekday()) % 7)
            saturday += timedelta(days=7 * max(ordinal - 1, 0))
        else:  # before, or the last of
            saturday = end - timedelta(days=(end.weekday() - 5) % 7 or 7)
        return saturday, saturday + timedelta(days=2)
    size = timedelta(days=count * {"days": 1, "fortnight": 14}.get(unit, 7))
    if relation == "before":
        return start - size, start
    if relation == "after":
        return end, end + size
    if ordinal > 0:
        first = start + size * (ordinal - 1) / count
        return first, min(first + size, end)
    if ordinal < 0:
        return max(end - size, start), end
    if end - start <= timedelta(days=1):  # "the week of 3 June": the week around that day
        return start - timedelta(days=3), start + timedelta(days=4)
    return start, end


_SEASON_NAMES = "summer|winter|spring|autumn|fall"
_SEASON = re.compile(
    rf"\b(?:(?P<which>last|this|next|past)\s+(?P<named>{_SEASON_NAMES})"
    r"|(?:the\s+)?(?P<of>summer|winter|spring|autumn|fall)\s+(?:of\s+)?(?P<year>(?:19|20)\d\d))\b",
    re.IGNORECASE,
)
# The month each season starts in, meteorologically, north of the equator; south of it, six
# months on. Winter is the one whose January is in the year named.
_SEASON_START = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}


def _season(query: str, local_now: datetime, tz: tzinfo) -> Window | None:
    """ "Last summer", "this winter", "next spring", "summer 2023", "the autumn of 2019": three
    months, by the hemisphere of the chats' time zone (``_south``). "Fall" only with one of
    those words or a year: alone it is a verb as often as a season."""
    m = _SEASON.search(query)
    if m is None:
        return None
    name = (m["named"] or m["of"]).lower()
    start_month = _SEASON_START[name]
    if _south(tz):
        start_month = (start_month + 6 - 1) % 12 + 1

    def starting(year: int) -> datetime:
        # A season starting in December is the one whose January is in ``year`` + 1 north of
        # the equator: named by that January's year, it starts in the December before.
        return datetime(year, start_month, 1)

    def ending(start: datetime) -> datetime:
        return start.replace(year=start.year + (start.month > 9), month=(start.month + 2) % 12 + 1)

    if m["year"]:
        year = int(m["year"])
        start = starting(year - 1 if start_month == 12 else year)
    else:
        # From the latest to have started: "last" ("past") is the latest to have ended, "next"
        # the first to come; "this" the one under way, else the nearer of those two ("this
        # summer" in October is the one just gone, in April the one to come).
        start = starting(local_now.year)
        while start > local_now:
            start = start.replace(year=start.year - 1)
        ended = local_now >= ending(start)
        which = m["which"].lower()
        if which in ("last", "past") and not ended:
            start = start.replace(year=start.year - 1)
        elif which == "next":
            start = start.replace(year=start.year + 1)
        elif which == "this" and ended:
            coming = start.replace(year=start.year + 1)
            if coming - local_now < local_now - ending(start):
                start = coming
    end, at = ending(start), m.start()
    edge = _EDGE_BEFORE.search(query[: m.start()])
    if edge is not None:  # "late last summer", "the end of summer 2023"
        start, end = _edged(edge, start, end, "season")
        at = edge.start()
    return Window(start.replace(tzinfo=tz), end.replace(tzinfo=tz), query[at : m.end()])


def _easter(year: int) -> datetime:
    """Easter Sunday (Western) of ``year``, at midnight."""
    return datetime.combine(easter(year), datetime.min.time())


# Days named by a feast, which the parser does not read: each from its first day, for so many
# days. Christmas is Christmas Eve to Boxing Day, Easter Good Friday to Easter Monday, "New
# Year" its eve and day.
_FEASTS: dict[str, tuple[Callable[[int], datetime], int]] = {
    "christmas eve": (lambda y: datetime(y, 12, 24), 1),
    "christmas day": (lambda y: datetime(y, 12, 25), 1),
    "boxing day": (lambda y: datetime(y, 12, 26), 1),
    "christmas": (lambda y: datetime(y, 12, 24), 3),
    "xmas": (lambda y: datetime(y, 12, 24), 3),
    "new years eve": (lambda y: datetime(y, 12, 31), 1),
    "new years day": (lambda y: datetime(y, 1, 1), 1),
    "new year": (lambda y: datetime(y - 1, 12, 31), 2),
    "easter sunday": (lambda y: _easter(y), 1),
    "easter monday": (lambda y: _easter(y) + timedelta(1), 1),
    "good friday": (lambda y: _easter(y) - timedelta(2), 1),
    "easter": (lambda y: _easter(y) - timedelta(2), 4),
    "halloween": (lambda y: datetime(y, 10, 31), 1),
    "valentines day": (lambda y: datetime(y, 2, 14), 1),
}


def _spelt(feast: str) -> str:
    """A pattern for the feast as people write it: "new years eve" also "New Year's Eve" (the
    apostrophe straight or curly), "christmas eve" with any spaces."""
    return r"\s+".join(
        re.sub("s$", "['’]?s", w) if w in ("years", "valentines") else w for w in feast.split()
    )


_FEAST = re.compile(
    rf"\b(?:(?P<on>{'|'.join(_TIME_PREPOSITIONS)})\s+)?"
    r"(?:(?P<which>last|this|next|past)\s+)?"
    rf"(?P<feast>{'|'.join(_spelt(f) for f in sorted(_FEASTS, key=len, reverse=True))})(?:['’]?s)?"
    r"(?:\s+(?:of\s+)?(?P<year>(?:19|20)\d\d))?\b",
    re.IGNORECASE,
)


def _holiday(query: str, local_now: datetime, tz: tzinfo) -> Window | None:
    """ "Over Christmas", "last Easter", "New Year's Eve 2023", "at Halloween": the days of the
    feast (``_FEASTS``). With a year, that year's ("New Year 2024" is its first day and the
    eve before); "next" the first to come; "last" the latest to have ended; "this" the one
    under way, else the nearer of those two; otherwise the latest to have begun (questions ask
    of the past). The name alone, with no preposition before it, is no time ("the Christmas
    tree")."""
    # A feast's name alone is often a thing's ("the Christmas tree"): a time only after a
    # preposition or "last", "this", "next", or with a year.
    m = next((f for f in _FEAST.finditer(query) if f["on"] or f["which"] or f["year"]), None)
    if m is None:
        return None
    first, days = _FEASTS[" ".join(re.sub("['’]", "", m["feast"]).lower().split())]

    def span(year: int) -> tuple[datetime, datetime]:
        start = first(year)
        return start, start + timedelta(days=days)

    if m["year"]:
        start, end = span(int(m["year"]))
    else:
        which = (m["which"] or "").lower()
        year = local_now.year
        while span(year)[0] > local_now:
            year -= 1
        ended = span(year)[1] <= local_now
        if which in ("last", "past") and not ended:
            year -= 1
        elif which == "next":
            year += 1
        elif which == "this" and ended:  # the nearer of the one gone and the one to come
            if span(year + 1)[0] - local_now < local_now - span(year)[1]:
                year += 1
        start, end = span(year)
    at = m.start("which") if m["which"] else m.start("feast")
    return Window(start.replace(tzinfo=tz), end.replace(tzinfo=tz), query[at : m.end()])


_DAY_PART = re.compile(
    r"\b(?:this|earlier this|early this)\s+(?:morning|afternoon|evening)\b", re.I
)


def _today(query: str, local_now: datetime, tz: tzinfo) -> Window | None:
    """ "This morning", "this afternoon", "this evening", which the parser does not read: today."""
    m = _DAY_PART.search(query)
    if m is None:
        return None
    day = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(day.replace(tzinfo=tz), (day + timedelta(days=1)).replace(tzinfo=tz), m.group())


def _south(tz: tzinfo) -> bool:
    """Whether the zone lies south of the equator, by its latitude in the time zone database's
    ``zone1970.tab`` (the system's, else the ``tzdata`` package's); north when unknown."""
    return getattr(tz, "key", None) in _southern_zones()


@cache
def _southern_zones() -> frozenset[str]:
    text = None
    for folder in zoneinfo.TZPATH:
        try:
            text = (Path(folder) / "zone1970.tab").read_text(encoding="utf-8")
            break
        except OSError:
            continue
    if text is None:
        try:
            text = resources.files("tzdata.zoneinfo").joinpath("zone1970.tab").read_text("utf-8")
        except (ModuleNotFoundError, OSError):
            return frozenset()
    south = set()
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and not line.startswith("#") and fields[1].startswith("-"):
            south.add(fields[2])
    return frozenset(south)


def _few(query: str, local_now: datetime, tz: tzinfo) -> Window | None:
    """ "A few days (weeks, months, years) ago", which the parser does not read: from five of
    them before today to two."""
    m = _FEW.search(query)
    if m is None:
        return None
    unit = timedelta(days=_FEW_DAYS[m.group(1).lower()])
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - 5 * unit, today - 2 * unit + timedelta(days=1)
    return Window(start.replace(tzinfo=tz), end.replace(tzinfo=tz), m.group())


_WEEKEND = re.compile(r"\b(last|past|this|the)\s+weekend(\s+before\s+last)?\b", re.IGNORECASE)


def _weekend(query: str, local_now: datetime, tz: tzinfo) -> Window | None:
    """ "Last weekend", which the parser does not know: Saturday and Sunday before this week's
    (on a Saturday or Sunday, the one before); "the weekend before last" the one before that.
    "This weekend" or "the weekend" asked of memory: the one under way on a Saturday or Sunday,
    else the last one."""
    m = _WEEKEND.search(query)
    if m is None:
        return None
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    saturday = today - timedelta(days=(today.weekday() - 5) % 7)  # the latest, today included
    in_it = today.weekday() >= 5
    if in_it and m.group(1).lower() in ("last", "past"):
        saturday -= timedelta(days=7)
    if m.group(2):  # "the weekend before last"
        saturday -= timedelta(days=7)
    start = saturday.replace(tzinfo=tz)
    return Window(start, (saturday + timedelta(days=2)).replace(tzinfo=tz), m.group())


def _joined(
    query: str, found: list[tuple[str, datetime]], parser: DateDataParser
) -> Iterator[tuple[str, datetime, str]]:
    """The expressions ``search_dates`` found, with their dates and periods (day, week, month,
    year), each joined with those right after it in the query when together they read as one
    date with its year: ``search_dates`` splits "April 10, 2023" into "April", "10" and "2023",
    and "April" alone is April of this year. Without a year the parts stay apart: a number
    after a month may count something else. Lazily: the caller stops at the first time word,
    and each parse costs milliseconds."""
    located: list[tuple[int, int, str, datetime]] = []
    at = 0
    for expression, when in found:
        start = query.find(expression, at)
        if start < 0:  # not where expected: no joining past it
            located.append((-1, -1, expression, when))
            continue
        located.append((start, start + len(expression), expression, when))
        at = start + len(expression)
    for i, (start, end, expression, when) in enumerate(located):
        best = (expression, when, parser.get_date_data(expression).period or "day")
        last = end
        for next_start, next_end, _, _ in located[i + 1 :]:
            if start < 0 or next_start < 0 or not _SEPARATOR.fullmatch(query[last:next_start]):
                break
            text = query[start:next_end]
            data = parser.get_date_data(text)
            if data.date_obj is None:
                break
            last = next_end
            if _YEAR.search(text):  # what a part alone loses; without one, parts stay apart
                best = (text, data.date_obj, data.period or "day")
        yield best


def _trimmed(
    expression: str, when: datetime, period: str, parser: DateDataParser
) -> tuple[str, datetime, str]:
    """The expression without the words at its ends that are neither time words nor digits,
    where the parser reads what is left as a time that holds the date. ``search_dates`` takes
    in a word beside a date ("in December 2023 after" in "in December 2023 after a long time")
    and then reads it as a day, today's day of that month; "in December 2023" is the month.
    (The parser fills a missing day with today's, so the dates themselves may differ.)"""
    parts = expression.split()

    def stray(word: str) -> bool:
        bare = re.sub(r"[^A-Za-z0-9]", "", word).lower()
        return bare not in _CUES and not any(c.isdigit() for c in bare)

    changed = False
    for side in (-1, 0):  # the last words, then the first
        while len(parts) > 1 and stray(parts[side]):
            rest = parts[:-1] if side == -1 else parts[1:]
            data = parser.get_date_data(" ".join(rest))
            if data.date_obj is None:
                break
            since, until = _span(data.date_obj, data.period or "day")
            if not since <= when < until:
                break
            parts, changed, when, period = rest, True, data.date_obj, data.period or "day"
    return (" ".join(parts), when, period) if changed else (expression, when, period)


def _agreeing(
    expression: str, when: datetime, period: str, parser: DateDataParser
) -> tuple[str, datetime, str] | None:
    """The expression as read when the day it names agrees with its date. ``search_dates`` reads
    "on Monday, 10 people" as "on Monday, 10" and that as October, the weekday dropped: a date
    that is not the weekday it names (or not a day at all) is a misreading, and the expression
    up to its weekday ("on Monday") is read instead; None when that reads as nothing. A date
    with its month or year ("Sunday 5 March") is what the person wrote, whatever weekday they
    put beside it."""
    found = [(m.group().lower(), m.end()) for m in re.finditer(r"[A-Za-z]+", expression)]
    named = next(((w, end) for w, end in found if w in _WEEKDAYS), None)
    if named is None or any(w in _MONTHS for w, _ in found) or _DIGIT_DATE.search(expression):
        return expression, when, period
    if period == "day" and when.weekday() == _WEEKDAYS.index(named[0]):
        return expression, when, period
    text = expression[: named[1]]
    data = parser.get_date_data(text)
    if data.date_obj is None or text == expression:
        return None
    return text, data.date_obj, data.period or "day"


def asks_what_was_said(query: str) -> bool:
    return any(w in _SPEECH for w in words(query))


def names_only_a_time(query: str, window: Window) -> bool:
    """Whether ``query`` asks about nothing but the window's time: without its time expression,
    only stopwords, words of asking ("say", "talk", "happen") and time words are left."""
    rest = re.sub(re.escape(window.expression), " ", query, flags=re.IGNORECASE)
    return all(w in STOPWORDS or w in _ASKING or w in _CUES for w in words(rest))


def describe(window: Window) -> str:
    """The window in words for a person: "3 June 2025", "March 2019", "2023", or "13 to 19
    November 2026" (``until`` is exclusive)."""
    start, last = window.since, window.until - timedelta(days=1)
    whole_months = start.day == 1 and window.until.day == 1
    if start.date() == last.date():
        return f"{start.day} {start:%B %Y}"
    if whole_months and (start.month, last.month, start.year) == (1, 12, last.year):
        return f"{start:%Y}"
    if whole_months and (start.year, start.month) == (last.year, last.month):
        return f"{start:%B %Y}"
    if (start.year, start.month) == (last.year, last.month):
        return f"{start.day} to {last.day} {last:%B %Y}"
    if start.year == last.year:
        return f"{start.day} {start:%B} to {last.day} {last:%B %Y}"
    return f"{start.day} {start:%B %Y} to {last.day} {last:%B %Y}"


def _span(when: datetime, period: str) -> tuple[datetime, datetime]:
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "year":
        start = day.replace(month=1, day=1)
        return start, start.replace(year=start.year + 1)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    if period == "week":  # "two weeks ago", "last week": the week around that day
        return day - timedelta(days=3), day + timedelta(days=4)
    return day, day + timedelta(days=1)
