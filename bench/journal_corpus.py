"""A seeded generator of long single-speaker journals with planted facts and paraphrased
questions: a recall benchmark unlike LoCoMo (no dialogue, no speaker names, longer entries).

Each journal is a run of daily entries (about 190-460 characters) of everyday filler drawn from
topic templates. In some entries a fact takes the place of the longest filler sentence ("Paid 340
euros to get the dishwasher repaired"), so such an entry is about as long as the others (median
325 characters against 309 at seed 7); each fact has a question that paraphrases it ("How much
did fixing the dishwasher cost me?"), sharing at most the entity it is about, never the answer;
and each fact has distractor entries that mention the same entity without the fact (two about
the same subject, six passing mentions), so the entity alone points at nine entries. So plain
BM25 finds the entity everywhere it occurs, plain dense search finds the theme in every fact of
the same kind, and only both together point at the one entry. No model is called; the same seed
gives the same corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PETS = "Biscuit Pepper Luna Milo Otto Juno Ziggy Mabel Fennel Tofu Basil Nacho".split()
APPLIANCES = [
    "dishwasher",
    "boiler",
    "fridge",
    "washing machine",
    "oven",
    "tumble dryer",
    "kettle",
    "lawnmower",
]
PEOPLE = "Hilde Marta Ines Greta Sanne Lotte Agnes Vera Ruth Edith Clara Nora".split()
CITIES = "Tromso Porto Ghent Lyon Krakow Bergen Valencia Tallinn Bologna Utrecht Graz Leeds".split()
DRUGS = "ramipril metformin sertraline levothyroxine omeprazole atorvastatin amlodipine".split()
COLLEAGUES = "Dieter Priya Tomasz Aoife Kwame Henrik Lucia Mateo Yusuf Ingrid Rafael".split()
PLANTS = "tulip daffodil crocus allium hyacinth snowdrop iris".split()
RUNS = ["5k", "10k", "half marathon", "parkrun", "hill loop", "river route"]
CARS = "Golf Corolla Fiesta Clio Polo Civic Octavia Panda".split()
FRIENDS = "Bea Dora Fay Gwen Ivy Kit Liv Meg Pia Tess".split()
GIFTS = [
    "ceramic teapot",
    "pair of hiking poles",
    "vinyl record",
    "silk scarf",
    "sourdough starter",
    "chess set",
    "film camera",
]
MONTHS = (
    "January February March April May June July August September October November December".split()
)

# (fact, question, distractors); {e} is the entity the question names, others are the answer.
FAMILIES: list[tuple[str, str, tuple[str, str], dict[str, list[str]]]] = [
    (
        "The vet said {e} has to lose about {n} kilos before the spring.",
        "What did the animal doctor tell me about {e}'s weight?",
        ("{e} slept on the sofa all afternoon again.", "Took {e} for a long walk along the canal."),
        {"e": PETS},
    ),
    (
        "Paid {n}0 euros to get the {e} repaired, far more than I expected.",
        "How much did fixing the {e} cost me?",
        (
            "The {e} is making that strange noise again.",
            "Wondering whether to replace the {e} this year.",
        ),
        {"e": APPLIANCES},
    ),
    (
        "My sister {e} has finally moved to {c} with the kids.",
        "Which town did {e} relocate to?",
        (
            "{e} phoned about the holidays, long call.",
            "Lunch with {e} was lovely, we laughed a lot.",
        ),
        {"e": PEOPLE, "c": CITIES},
    ),
    (
        "The doctor put me on {e}, one tablet each morning for {n} weeks.",
        "For how long am I supposed to take the {e} pills?",
        (
            "Picked up more {e} at the pharmacy.",
            "Read the leaflet for the {e} twice, still confused.",
        ),
        {"e": DRUGS},
    ),
    (
        "{e} told me in confidence that they are leaving the company at the end of {m}.",
        "When is {e} quitting their job?",
        (
            "{e} brought cake to the office today.",
            "Long meeting with {e} about the budget, nothing decided.",
        ),
        {"e": COLLEAGUES, "m": MONTHS},
    ),
    (
        "Booked the flight to {e}: seat {n}C, by the window, leaving early.",
        "Which seat did I get on the plane to {e}?",
        ("Read an article about the food in {e}.", "Maybe we should visit {e} again some day."),
        {"e": CITIES},
    ),
    (
        "Planted {n}0 {e} bulbs along the fence by the shed.",
        "How many {e}s did I put in the garden?",
        ("The {e}s in the neighbour's yard look great.", "Bought a book about growing {e}s."),
        {"e": PLANTS},
    ),
    (
        "Did the {e} in {n}3 minutes today, my best ever, legs felt fine.",
        "What was my record time on the {e}?",
        (
            "Thinking of signing up for another {e} in the autumn.",
            "My knee hurts after the {e} training.",
        ),
        {"e": RUNS},
    ),
    (
        "Sold the old {e} to {b} for {n}00 euros, glad it is gone.",
        "Who bought my {e}, and for how much?",
        ("The {e} would not start this morning.", "Washed the {e} and vacuumed the seats."),
        {"e": CARS, "b": COLLEAGUES},
    ),
    (
        "{e}'s birthday is coming up and she dropped a hint that she wants a {g}.",
        "What present would {e} like?",
        ("Coffee with {e} downtown, she looked tired.", "{e} sent photos of her new flat."),
        {"e": FRIENDS, "g": GIFTS},
    ),
]

# Passing mentions of an entity, with nothing about the fact: they make the entity, the one word
# a question shares with its answer, common enough that it cannot pick the entry on its own.
MENTIONS = [
    "Thought about {e} while doing the dishes.",
    "Mentioned {e} to a neighbour, who had a story of their own.",
    "Nothing new about {e} this week.",
    "Made a note to sort out the {e} thing at some point.",
    "Saw a photo that reminded me of {e}.",
    "Talked with Mum about {e} for a bit.",
    "Should write down more about {e}, I keep forgetting details.",
    "The {e} topic came up again at dinner.",
]

TOPICS = [
    "The weather was {adj} and I spent most of the {part} {indoor}.",
    "Made {dish} for dinner; it turned out {adj2}.",
    "Work was {adj2} today, too many {workthing}.",
    "Read a few chapters of a {genre} novel before bed.",
    "The {room} needs tidying, there are {stuff} everywhere.",
    "Went for a walk in the {place} and saw {sight}.",
    "Called the bank about the {money} but nobody could help.",
    "Slept badly, woke up at {hour} and could not get back to sleep.",
    "Tried a new recipe with {ingredient}, not sure about it.",
    "The train was late again, so I missed the start of the {event}.",
    "Spent an hour sorting {stuff} in the {room}.",
    "The neighbours were {noise} until late.",
    "Bought {ingredient} and {ingredient2} at the market.",
    "Watched a documentary about {docu}, surprisingly good.",
    "Felt {mood} most of the day, not sure why.",
    "Wrote a long email to the council about the {issue}.",
]
SLOTS = {
    "adj": ["grey", "bright", "windy", "mild", "cold", "humid", "foggy", "sunny"],
    "adj2": ["fine", "a mess", "better than expected", "exhausting", "quiet", "odd"],
    "part": ["morning", "afternoon", "evening", "day"],
    "indoor": ["reading", "at the desk", "on the phone", "cleaning", "sorting papers"],
    "dish": ["lentil soup", "a risotto", "fish pie", "dumplings", "a curry", "pancakes"],
    "workthing": ["meetings", "emails", "deadlines", "reports", "interruptions"],
    "genre": ["crime", "historical", "science fiction", "romance", "mystery"],
    "room": ["attic", "kitchen", "hallway", "spare room", "cellar", "study"],
    "stuff": ["cables", "old letters", "books", "shoes", "receipts", "toys"],
    "place": ["park", "woods", "old town", "harbour", "cemetery", "allotments"],
    "sight": ["a heron", "two foxes", "a street band", "a wedding", "the first blossom"],
    "money": ["standing order", "card fee", "mortgage letter", "overdraft"],
    "hour": ["three", "four", "half past two", "five"],
    "ingredient": ["fennel", "chickpeas", "quince", "miso", "celeriac", "mackerel"],
    "ingredient2": ["leeks", "apples", "goat cheese", "rye bread", "plums"],
    "event": ["concert", "lecture", "workshop", "match", "film"],
    "noise": ["drilling", "arguing", "singing", "hammering"],
    "docu": ["octopuses", "the Silk Road", "bridges", "bees", "glaciers", "chess"],
    "mood": ["restless", "content", "flat", "cheerful", "anxious"],
    "issue": ["potholes", "street lights", "bins", "parking", "noise"],
}


MENTIONS_PER_FACT = 6


@dataclass
class Entry:
    chat: int
    ref: str
    ts: datetime
    text: str


@dataclass
class Probe:
    chat: int
    question: str
    ref: str  # the entry holding the answer


def _fillers(rng: random.Random, n: int) -> list[str]:
    return [t.format(**{k: rng.choice(v) for k, v in SLOTS.items()}) for t in rng.sample(TOPICS, n)]


def _replace_longest(body: list[str], sentence: str) -> None:
    """Put ``sentence`` where the longest filler sentence was: an entry with a planted sentence
    is about as long as one without, so a length prior cannot find it by its length."""
    body[max(range(len(body)), key=lambda n: len(body[n]))] = sentence


def journal(chat: int, days: int, rng: random.Random) -> tuple[list[Entry], list[Probe]]:
    start = datetime(2025, 1, 1, 21, tzinfo=UTC)
    bodies = [_fillers(rng, rng.randint(4, 8)) for _ in range(days)]
    free = list(range(days))
    rng.shuffle(free)
    probes = []
    for fact, question, distractors, slots in FAMILIES:
        entities = rng.sample(slots["e"], 3)  # three facts of each kind per journal
        for e in entities:
            values = {k: rng.choice(v) for k, v in slots.items() if k != "e"}
            values |= {"e": e, "n": str(rng.randint(2, 9))}
            day = free.pop()
            _replace_longest(bodies[day], fact.format(**values))
            probes.append(Probe(chat, question.format(**values), f"J{chat}:{day}"))
            for d in [*distractors, *rng.sample(MENTIONS, MENTIONS_PER_FACT)]:
                other = free.pop()
                _replace_longest(bodies[other], d.format(**values))
    entries = [
        Entry(chat, f"J{chat}:{day}", start + timedelta(days=day), " ".join(body))
        for day, body in enumerate(bodies)
    ]
    return entries, probes


OPENERS = [
    "That sounds like a full day.",
    "Thanks for telling me how it went.",
    "It sounds like a lot happened today.",
    "Good to hear from you again this evening.",
    "That is quite a day, by the sound of it.",
]

# How an assistant closes a reply: a question back, which the person's next turn answers (or
# ignores, as a journal does).
CLOSERS = [
    "Would you like me to remind you about any of this tomorrow?",
    "How are you feeling about it now?",
    "Shall I keep a note of that for later?",
    "What are you planning for the rest of the week?",
    "Is there anything you want to talk through?",
]


def replies(
    entries: list[Entry], seed: int, *, echo: bool = False, ask: bool = False
) -> list[Entry]:
    """An assistant's reply to each entry, as in a chat with an assistant: an opener and 8 to 14
    filler sentences (about twice an entry's length: median 612 against 311 characters at seed
    7), none holding a fact or an entity a question names. With ``echo``, the opener is followed
    by one of the entry's sentences, quoted ("You wrote: ..."), as an assistant takes up what it
    was told: then a reply may hold the fact too, and competes with the entry that answers. Ref
    ``<entry>/reply``, two minutes after the entry. With ``ask``, the reply ends with a question
    back (``CLOSERS``), as an assistant's often do: the person's next entry follows a question
    it does not answer."""
    rng = random.Random(seed + 1)
    quote = random.Random(seed + 2)
    closing = random.Random(seed + 3)
    out = []
    for e in entries:
        said = [rng.choice(OPENERS), *_fillers(rng, rng.randint(8, 14))]
        if echo:
            said.insert(1, f"You wrote: {quote.choice(e.text.split('. ')).rstrip('.')}.")
        if ask:
            said.append(closing.choice(CLOSERS))
        out.append(Entry(e.chat, f"{e.ref}/reply", e.ts + timedelta(minutes=2), " ".join(said)))
    return out


def corpus(seed: int, chats: int, days: int) -> tuple[list[Entry], list[Probe]]:
    rng = random.Random(seed)
    entries, probes = [], []
    for chat in range(chats):
        e, p = journal(chat, days, rng)
        entries += e
        probes += p
    return entries, probes
