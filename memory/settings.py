"""Settings owned by the memory package (``[memory]`` in the TOML file, ``FAMILIAR_MEMORY__*``)."""

from typing import Literal

from pydantic import BaseModel, Field


class MemorySettings(BaseModel):
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Sentence-transformers model: 'all-MiniLM-L6-v2' (bundled, offline) or a local model directory.",
    )
    fts_max_postings: int = Field(
        2_000,
        ge=100,
        description="Past this many rows, full-text search leaves out query words found in more "
        "rows than this or in more than half of them: they weigh little in BM25 but cost a scan.",
    )
    embedding_threads: int | None = Field(
        1,
        ge=1,
        description="CPU threads torch uses for embedding in the daemon; 1 keeps answers quick on small machines "
        "(measured: two threads on two cores fight); unset uses torch's default.",
    )
    embedding_traced: bool = Field(
        True,
        description="In the daemon, embed one text at a time (a search's query, a message) "
        "through a TorchScript trace of the model, checked against it at load: about 1.5 ms "
        "sooner a query on a CPU, for about 1.3 s more load in the background and 28 MB more "
        "memory.",
    )
    embedding_query_int8: bool = Field(
        True,
        description="In the daemon, embed a search's query (one not stored already) with an "
        "int8 copy of the model, traced (needs embedding_traced) and checked against it at load: "
        "about 0.4 of the time on one CPU thread, recall within a few questions on the "
        "benchmarks, for under a second more load in the background and about 36 MB more "
        "memory. Queries under 8 tokens and stored vectors are the float model's either way.",
    )
    embedding_batch_size: int = Field(64, ge=1, le=4096, description="Texts embedded per batch.")
    max_text_bytes: int = Field(
        1_000_000, ge=1_000, description="Longest text accepted into memory, in UTF-8 bytes."
    )
    embed_chunk_chars: int = Field(
        2_000,
        ge=100,
        description="Texts longer than this are split into chunks of this many characters for "
        "embedding; the stored vector is the normalised mean of the chunks' vectors.",
    )
    exact_index_max: int = Field(
        50_000,
        ge=1,
        description="Up to this many vectors the index is exact (flat inner product); past it an "
        "approximate IVF index is built.",
    )
    ivf_nprobe: int = Field(
        128,
        ge=1,
        description="Inverted lists visited per query by the approximate index (at 100k real "
        "MiniLM vectors: 48 finds 0.925 of the exact top 10, 128 finds 0.978 for ~1 ms more).",
    )
    exact_filter_max: int = Field(
        4_000,
        ge=0,
        description="A search narrowed to a time window or to some kinds is exact over the rows "
        "the filter lets through when there are at most this many (otherwise the index is "
        "over-fetched and filtered).",
    )
    index_save_every: int = Field(
        2_000,
        ge=1,
        description="Save the vector index after this many new vectors (it is also saved at stop).",
    )
    search_candidates: int = Field(
        100,
        ge=10,
        description="Candidates taken from each of full-text and dense search before fusion.",
    )
    fusion: Literal["rrf", "score"] = Field(
        "rrf",
        description="How full-text and dense rankings are merged: 'rrf' (reciprocal rank: each "
        "list counts by rank, not by score) or 'score' (standardised scores mixed with "
        "dense_weight). On held-out data RRF wins on LoCoMo as messages (R@5 0.605 against "
        "0.593) and on the journal bench (0.756 against 0.622), loses on LoCoMo as notes (0.541 "
        "against 0.576); see bench/memory_locomo.py, bench/memory_journal.py.",
    )
    rrf_k: int = Field(
        5,
        ge=1,
        le=1000,
        description="With fusion = 'rrf': the rank constant k in 1/(k + rank); small k lets the "
        "head of each list count (5: best of 5, 20 and the usual 60 on LoCoMo's tuning half).",
    )
    dense_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="With fusion = 'score': weight of dense similarity in the fused score; the "
        "rest goes to BM25 (0.3: best on LoCoMo's tuning half, conversations 1-5).",
    )
    dense_min_similarity: float = Field(
        0.1,
        ge=-1.0,
        le=1.0,
        description="A memory that shares no word with the query is found by meaning only when "
        "its similarity (or its best sentence's) is at least this. all-MiniLM-L6-v2 scores "
        "unrelated texts mostly below 0.05 ('garden' and 'the boiler code is 4821': 0.02), "
        "loosely related ones 0.1 to 0.2 ('car' and a bike lock code 0.14, 'paying the "
        "government' and a tax return 0.17), paraphrases 0.3 and up. Recall on LoCoMo and the "
        "generated journals was the same with it as without. With another embedding model, "
        "check its scale (some score everything above 0.7, and then this does nothing).",
    )
    recency_half_life_days: float = Field(
        0.0,
        ge=0.0,
        description="When above 0, a hit's score is blended with a recency factor halving every "
        "this many days.",
    )
    recency_weight: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of the fused score given to recency (when enabled)."
    )
    mmr_lambda: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Maximal-marginal-relevance trade-off: 1.0 ranks by relevance only, lower "
        "values favour diverse hits.",
    )
    time_in_queries: bool = Field(
        True,
        description="A time named in a question ('last March', 'two weeks ago', 'last summer', "
        "'early May', 'over Christmas') "
        "ranks memories from then first, with those whose words tell of then ('yesterday I went "
        "bowling', said the day after); read in jobs.timezone, whose hemisphere sets the seasons.",
    )
    attach_turns: int = Field(
        1,
        ge=0,
        le=5,
        description="A conversation hit carries this many turns before and after it as context "
        "(shown with it; never ranked in its place).",
    )
    turn_context_weight: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="A conversation turn's vector in the index is its own plus this share of "
        "the turn before it where that is the other side's (normalised), so an answer is found "
        "by a question about what it answered. 0 (each turn alone): in a chat with an assistant "
        "the turn before a person's message is the assistant's long reply, and keyed with it "
        "the person's own words were lost (bench/memory_journal.py --with-replies: R@5 0.678 "
        "with 1, 0.756 with 0); between two people (LoCoMo held out) 1 gains 0.02. A change "
        "rebuilds the index from SQLite at the next start.",
    )
    turn_context_words: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Full-text search ranks a conversation turn by its own words plus this share "
        "of the words of the turns just before and after it where they are the other side's "
        "(and by the length of all three), so an answer is found by the words of the question it "
        "answered; 0: by its own words alone (0.3: 0.2 to 0.5 were within 0.005 on LoCoMo's "
        "tuning half).",
    )
    short_turns_rank_lower: bool = Field(
        True,
        description="A conversation turn shorter than twice the median length of the turns of "
        "its side (its role) found with it has its score scaled by the square root of that "
        "ratio, by half at most: "
        "short turns ('Wow, great!') rarely hold what is asked about. Facts and documents are "
        "never scaled; notes by short_notes_rank_lower.",
    )
    short_notes_rank_lower: bool = Field(
        True,
        description="The same for notes, measured against the other notes found: a short note "
        "that mentions what is asked about ranks below a longer one that says something about "
        "it (LoCoMo's turns imported as notes, held out: R@5 0.577 -> 0.612; the generated "
        "journals, six chats, 0.817 -> 0.839). Off when your notes are short on purpose "
        "(codes, numbers) and should rank first for their words.",
    )
    fact_duplicate_cosine: float = Field(
        0.95,
        ge=0.5,
        le=1.0,
        description="A new fact at least this similar to a known one is the same fact.",
    )
    fact_supersede_cosine: float = Field(
        0.80,
        ge=0.3,
        le=1.0,
        description="A new fact at least this similar (but not a duplicate) to a known one "
        "replaces it; the old one is kept as history.",
    )
    fact_judge_cosine: float = Field(
        0.70,
        ge=0.3,
        le=1.0,
        description="With a model configured, a new fact at least this similar to a known one "
        "that no rule decides (duplicate, correction or another fact) is put to the model, in "
        "one batched call; without a model it is added.",
    )
    context_recall_k: int = Field(
        8, ge=0, description="Memories recalled for the incoming message when assembling context."
    )
    document_chunk_chars: int = Field(
        1_000,
        ge=200,
        le=20_000,
        description="Documents and web pages are split into chunks of about this many characters "
        "(along headings and paragraphs) before they are stored; the default fits the bundled "
        "model's 256-token window, so no part of a chunk is left out of its vector.",
    )
    document_chunk_overlap: int = Field(
        150,
        ge=0,
        description="Characters of a full chunk repeated at the start of the next (at most half a chunk).",
    )
    document_max_bytes: int = Field(
        20_000_000,
        ge=1_000,
        description="Largest document file accepted, in bytes (Telegram lets bots download at most 20 MB).",
    )
    document_max_pages: int = Field(
        500, ge=1, description="Most pages of a PDF accepted into memory."
    )
    document_max_unpacked_bytes: int = Field(
        100_000_000,
        ge=1_000_000,
        description="Largest total an Office file (a ZIP inside) may unpack to; more is refused as a ZIP bomb.",
    )
    document_inline_chars: int = Field(
        12_000,
        ge=0,
        description="A document up to this many characters goes to the model whole with a question "
        "about it; a longer one through search of its chunks.",
    )
    document_context_chunks: int = Field(
        6,
        ge=1,
        description="Chunks of a long document given to the model with a question about it.",
    )


class MediaSettings(BaseModel):
    """``[media]``: photos people send. Memory owns the section because it keeps the images
    (content-addressed files in the data directory, referenced by memory rows, deleted with
    them); the channels only download and hand them over."""

    max_image_bytes: int = Field(
        5_000_000,
        ge=10_000,
        description="Largest photo accepted, in bytes: the largest size Telegram offers under this "
        "is downloaded (5 MB is the most Anthropic's API takes per image).",
    )
    max_image_pixels: int = Field(
        50_000_000,
        ge=10_000,
        description="Most pixels (width x height) an image may have; more is refused as a "
        "decompression bomb before it is decoded.",
    )
    album_window_s: float = Field(
        1.5,
        ge=0.0,
        le=30.0,
        description="How long the parts of an album (photos sent together) are collected before "
        "they are answered as one message.",
    )
