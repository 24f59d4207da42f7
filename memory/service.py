"""``Memory``: the facade the composition root builds once and every other package calls.

It owns the pieces (store, embedder, vector index, searcher) and keeps them consistent:
SQLite is written first and is the truth; the FAISS index follows (a row committed without a
vector is embedded later, a vector missing from the index is added at the next catch-up).
Async methods keep the event loop free: SQLite work runs on the database thread
(``db.run``), embedding and index maintenance on a single worker thread. The ``*_sync``
methods are the same operations for the CLI, benchmarks and worker threads. The vector side
(model, index, embedding, catch-up) is ``memory.upkeep``; adding memory cards is
``memory.fact_cards``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from loguru import logger

from memory import store
from memory.context import ContextAssembler, ExtractiveSummariser, Summariser
from memory.db import Database
from memory.embedder import Embedder
from memory.fact_cards import FactCards
from memory.facts import FactExtractor, FactJudge
from memory.index import VectorIndex
from memory.search import HybridSearcher, QueryVector
from memory.settings import MemorySettings
from memory.store import Filters, NewMemory, to_epoch
from memory.text import checked, clean, content_hash, estimate_tokens, words
from memory.types import AssembledContext, FactResult, Hit, Message, Revision, Scope
from memory.upkeep import Progress, VectorUpkeep
from memory.when import Window, asks_what_was_said, describe, names_only_a_time, time_window

T = TypeVar("T")

WARM_THREAD = "memory-warm"  # the name of the thread that loads the model (``still_loading``)


def still_loading() -> bool:
    """Whether a memory's model is still loading on its thread. The import of torch cannot be
    interrupted, and a thread still in it, or releasing tensors, when the interpreter finalises
    aborts the process ("terminate called without an active exception"): a process that stops
    meanwhile exits without finalising (``bot.cli.app``), its database closed."""
    return any(t.name == WARM_THREAD and t.is_alive() for t in threading.enumerate())


class Memory(VectorUpkeep):
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        settings: MemorySettings,
        index_dir: Path,
        *,
        summariser: Summariser | None = None,
        count_tokens: Callable[[str], int] = estimate_tokens,
        fact_judge: FactJudge | None = None,
        tz: tzinfo = UTC,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.settings = settings
        self.index_dir = Path(index_dir)
        self.summariser = summariser or ExtractiveSummariser()
        self.count_tokens = count_tokens
        self.tz = tz  # the chats' time zone: "yesterday" in a question is the user's yesterday
        self.clock = clock  # what "now" is for "two weeks ago" (a fixed one in tests)
        self.searcher = HybridSearcher(db, settings)
        self.facts = FactCards(self, fact_judge)
        self.index: VectorIndex | None = None
        self._guard = threading.RLock()  # index assignment, adds and removes
        self._save_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        # Embeds a search's query while its full-text search runs (both release the GIL).
        self._query_embedder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query")
        self._warm_task: asyncio.Task[None] | None = None
        self.warm_error: BaseException | None = None
        self._stopping = False
        self._warm_thread: threading.Thread | None = None
        self._synced_version: int | None = None
        self._topped_version: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the model and the index in the background; until then search is full-text only.

        The load runs on a daemon thread of its own, not on the memory worker, so that messages
        are stored (without vectors, embedded once the model is up) while the model loads, and
        a stop during the load does not wait for it: the load does no more once it sees the
        stop (see ``still_loading``)."""
        if self._warm_task is None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()

            def settle(error: BaseException | None) -> None:
                if done.done():
                    return
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

            def warm() -> None:
                error: BaseException | None = None
                try:
                    self.warm_sync()
                except BaseException as exc:  # logged by warm_sync
                    error = exc
                try:
                    loop.call_soon_threadsafe(settle, error)
                except RuntimeError:  # the loop closed while the model loaded: nobody waits
                    pass

            self._warm_thread = threading.Thread(target=warm, name=WARM_THREAD, daemon=True)
            self._warm_thread.start()
            self._warm_task = done  # type: ignore[assignment]

    async def retry_warm(self) -> bool:
        """Start the warm-up again after it failed (the disk was full, say, and has space again);
        False when it had not failed or is still running."""
        task = self._warm_task
        if self.warm_error is None or self._stopping or (task is not None and not task.done()):
            return False
        logger.info("memory: trying the warm-up again ({})", self.warm_error)
        if task is not None and not task.cancelled():
            task.exception()  # seen (logged by warm_sync): asyncio must not report it again
        self.warm_error, self._warm_task = None, None
        await self.start()
        return True

    async def wait_ready(self) -> None:
        if self._warm_task is not None:
            await asyncio.shield(self._warm_task)

    async def ready_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the embedding model (loading in the background); whether
        it is ready. A failed load is not raised here: the caller carries on without vectors."""
        if not self.embedder.ready and self._warm_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._warm_task), seconds)
            except Exception:  # noqa: BLE001 - the timeout, or the load's own (logged) failure
                pass
        return self.embedder.ready

    async def stop(self) -> None:
        self._stopping = True
        if self._warm_task is not None and not self._warm_task.done():
            # Still loading: nothing to save yet, and the load cannot be interrupted.
            logger.info("stopping while the embedding model is still loading")
        elif (
            self._warm_task is not None
            and not self._warm_task.cancelled()
            and self._warm_task.exception()
        ):
            logger.warning("memory warm-up had failed: {}", self._warm_task.exception())
        try:
            await self._offload(self.save_index)
        except (OSError, RuntimeError) as exc:  # FAISS says RuntimeError for a failed write
            # Derived state: the last saved index (or none) is caught up from SQLite at start.
            logger.warning("the vector index could not be saved ({}); rebuilt at next start", exc)
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._query_embedder.shutdown(wait=True)

    async def _offload(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run on the memory worker thread: one at a time, so writes keep their order."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, lambda: fn(*args, **kwargs)
        )

    # -- writes -------------------------------------------------------------------------------
    def add_sync(self, items: Sequence[NewMemory]) -> list[int]:
        """Store rows (texts already checked), with vectors when the model is loaded."""
        todo = [m for m in items if m.embedding is None]
        if self.embedder.ready and todo:
            self.embed_items(todo)
        self.tell_times(items)
        ids = store.insert_memories(self.db, items)
        if items and items[0].embedding is not None:
            self._index_add(ids, np.stack([m.embedding for m in items]))  # type: ignore[misc]
        elif self.embedder.ready:
            self.embed_pending()  # the model finished loading while we stored: embed them now
        return ids

    def new(self, text: str | bytes, scope: Scope, kind: str, **kw: Any) -> NewMemory:
        if kind == "message" and kw.get("role") is None:
            # A "message" is a conversation turn (in ``messages`` too, where full text finds it:
            # ``turns_fts``), as the importer makes one: the user's, unless said otherwise.
            kw["role"] = "user"
        clean = checked(text, self.settings.max_text_bytes)
        ts = kw.pop("ts", None)
        return NewMemory(
            scope.chat_id, scope.user_id, kind, clean, content_hash(clean), to_epoch(ts), **kw
        )

    async def store_turn(
        self,
        chat_id: int,
        user_id: int | None,
        role: str,
        text: str,
        *,
        ts: datetime | None = None,
        telegram_message_id: int | None = None,
        ref: str | None = None,
        meta: dict | None = None,
    ) -> tuple[int, bool]:
        """Store one turn; returns (message id, stored now). A user turn of a Telegram message
        that is already stored (a replayed update) is not stored again: (its id, False)."""
        keyed = role == "user" and telegram_message_id is not None
        if keyed:
            known = await self.db.run(store.find_turn, self.db, chat_id, telegram_message_id)
            if known is not None:
                return known, False
        item = self.new(
            text,
            Scope(chat_id, user_id),
            "message",
            ts=ts,
            ref=ref,
            meta=meta,
            role=role,
            telegram_message_id=telegram_message_id,
        )
        try:
            memory_id = (await self._offload(self.add_sync, [item]))[0]
        except sqlite3.IntegrityError:
            # The unique key caught a copy the look-up above missed; the insert rolled back whole.
            if not keyed:
                raise
            known = await self.db.run(store.find_turn, self.db, chat_id, telegram_message_id)
            if known is None:
                raise
            return known, False
        message_id = await self.db.run(store.message_id_of, self.db, memory_id)
        assert message_id is not None
        return message_id, True

    async def add_message(
        self, chat_id: int, user_id: int | None, role: str, text: str, **kwargs: Any
    ) -> int:
        """Store one turn (either side); returns the message id (``store_turn``'s keywords)."""
        return (await self.store_turn(chat_id, user_id, role, text, **kwargs))[0]

    async def answer_to(self, chat_id: int, message_id: int, edit: int | None = None) -> str | None:
        """The stored answer to user turn ``message_id``, if it was stored (with ``edit``: the
        answer given after that edit of it)."""
        return await self.db.run(store.answer_to, self.db, chat_id, message_id, edit)

    async def add_memory(
        self,
        text: str,
        scope: Scope,
        kind: str = "note",
        *,
        ref: str | None = None,
        ts: datetime | None = None,
    ) -> int:
        item = self.new(text, scope, kind, ts=ts, ref=ref)
        return (await self._offload(self.add_sync, [item]))[0]

    def add_all_sync(
        self, items: Sequence[NewMemory], progress: Progress | None = None
    ) -> list[int]:
        """Store rows that belong together (a document's chunks) in one transaction, embedding
        them first in batches, with ``progress(done, total)`` after each (from this thread)."""
        if self.embedder.ready:
            step = self.settings.embedding_batch_size * 4  # as embed_pending: few encode calls
            for start in range(0, len(items), step):
                part = items[start : start + step]
                self.embed_items(part)
                if progress:
                    progress(start + len(part), len(items))
        return self.add_sync(items)

    async def add_all(
        self, items: Sequence[NewMemory], progress: Progress | None = None
    ) -> list[int]:
        return await self._offload(self.add_all_sync, items, progress)

    def forget_sync(self, memory_id: int, scope: Scope, *, erase: bool = True) -> bool:
        """Delete one memory, leaving its text in no byte of the store (``store.purge_deleted``)
        and its vector out of the saved index: ~1 s at 100k turns (``bench/memory_scale.py``).
        Housekeeping (a summary or lesson card replaced by a newer one) passes ``erase=False``
        and skips that."""
        with self._guard:
            after: list[int] = []
            if self.keyed_with_neighbours:
                _, after = store.adjacent_turns(self.db, [memory_id], 1).get(memory_id, ([], []))
            removed = store.delete_memory(self.db, memory_id, scope)
            if removed and self.index is not None:
                self.index.remove([memory_id])
                self._rekey(after)  # its key held part of the forgotten turn
        if removed and erase:
            self._purge()
            self.save_index()  # nor its vector in the saved index (a backup copies it)
        return removed

    async def forget(self, memory_id: int, scope: Scope, *, erase: bool = True) -> bool:
        return await self._offload(self.forget_sync, memory_id, scope, erase=erase)

    async def purge(self) -> None:
        """Leave what was deleted from the store in no byte of it (``store.purge_deleted``):
        after other packages forgot a person's rows in the same database (/forgetme)."""
        await self._offload(self._purge)

    def _purge(self) -> None:
        store.purge_deleted(self.db)
        self.searcher.terms.clear()  # nor the words asked about kept in memory

    def forget_user_sync(self, user_id: int) -> int:
        with self._guard:
            keyed = self.keyed_with_neighbours
            chats = store.chats_of(self.db, store.user_turns(self.db, user_id)) if keyed else {}
            ids = store.delete_user(self.db, user_id)
            if self.index is not None:
                self.index.remove(ids)
                if keyed:  # the turns left in those chats may have been keyed with a deleted one
                    self._rekey(store.turns_in_chats(self.db, list(set(chats.values()))))
        self._purge()
        self.save_index()  # a forgotten user's vectors must not linger in the saved file
        return len(ids)

    async def forget_user(self, user_id: int) -> int:
        return await self._offload(self.forget_user_sync, user_id)

    def revise_turn_sync(
        self, chat_id: int, telegram_message_id: int, text: str, meta: dict[str, Any]
    ) -> Revision | None:
        """The person edited the Telegram message of a stored user turn: the turn now says
        ``text`` (its vector, sentence vectors, time told of, full text and the neighbours' keys
        follow), ``meta`` is merged into its meta, and the old words are left in no byte of the
        store, as a forget leaves them (an edit may take out what should not have been sent).
        None when no turn of that message is stored (a command, a message not for the bot);
        raises ``MemoryInputError`` for a stored turn's text that cannot be kept, as a new
        message would."""
        turn = store.turn_of(self.db, chat_id, telegram_message_id)
        if turn is None or turn.memory_id is None:
            return None
        item = self.new(text, Scope(chat_id, turn.user_id), "message", ts=turn.ts)
        latest = store.latest_user_turn(self.db, chat_id) == turn.id
        said = to_epoch(turn.ts)
        if turn.text == item.text:
            return Revision(turn.id, False, latest, said)
        if self.ready:  # else stored without a vector: the warm-up embeds it (and drops the old)
            self.embed_items([item])
        self.tell_times([item])
        with self._guard:
            new_id = store.revise_turn(self.db, turn.id, turn.text, item, meta)
            if new_id is None:
                return Revision(turn.id, False, latest, said)  # revised by another edit just now
            if self.index is not None:
                self.index.remove([turn.memory_id])
                if item.embedding is not None:
                    self._index_add([new_id], item.embedding[None, :])
                if self.keyed_with_neighbours:  # the turn after is keyed with this one's vector
                    _, after = store.adjacent_turns(self.db, [new_id], 1).get(new_id, ([], []))
                    self._rekey(after)
        self._purge()
        self.save_index()
        return Revision(turn.id, True, latest, said)

    async def revise_turn(
        self, chat_id: int, telegram_message_id: int, text: str, meta: dict[str, Any]
    ) -> Revision | None:
        return await self._offload(self.revise_turn_sync, chat_id, telegram_message_id, text, meta)

    # -- reads --------------------------------------------------------------------------------
    def search_sync(
        self,
        query: str,
        scope: Scope,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        now: datetime | None = None,
    ) -> list[Hit]:
        """Hybrid search. Without ``since``/``until``, a time the question names ("last March")
        is a boost: hits in that window first (provenance ``when``: the words), then the others
        (provenance ``outside``: the window in words) (``memory.when``)."""
        query = clean(query)[:10_000]
        if not words(query):  # only punctuation or operators: nothing to look for
            return []
        self.catch_up_for_search()
        vector = self._query_vector(query) if self.ready else None

        def run(f: Filters) -> list[Hit]:
            return self.searcher.search(query, f, k, query_vector=vector, index=self.index)

        window = None
        if since is None and until is None:
            window = self.time_asked(query, now)
        if window is None:
            return run(Filters(scope, kinds, since, until))
        if names_only_a_time(query, window):
            # Nothing to rank by but the time: what is kept from then, latest first. Other
            # times' "matches" would match only the words for the time.
            told = not asks_what_was_said(query)  # "what did I do yesterday?"
            then = Filters(scope, kinds, window.since, window.until, about=told)
            listed = [r.hit(0.0) for r in store.list_rows(self.db, then, k)]
            for h in listed:
                h.provenance["when"] = window.expression
            return listed
        # Also what was said later of then: "yesterday I went bowling", said the day after.
        inside = run(Filters(scope, kinds, window.since, window.until, about=True))
        for h in inside:
            h.provenance["when"] = window.expression
        seen = {h.id for h in inside}
        rest = (
            [h for h in run(Filters(scope, kinds)) if h.id not in seen] if len(inside) < k else []
        )
        for h in rest:  # from another time than the question names: /recall says so
            h.provenance["outside"] = describe(window)
        return (inside + rest)[:k]

    def time_asked(self, query: str, now: datetime | None = None) -> Window | None:
        """The time ``query`` names, read as ``search_sync`` reads it (None if it names none, or
        time in questions is off)."""
        if not self.settings.time_in_queries:
            return None
        return time_window(clean(query)[:10_000], now or self.clock(), self.tz)

    def _query_vector(self, query: str) -> QueryVector:
        """The query is usually the message just stored: its vector is reused by content hash.
        Otherwise it is embedded on another thread while full text is searched (the model and
        SQLite both release the GIL): ``HybridSearcher.candidates`` calls what this returns."""
        hashed = content_hash(query)
        stored = store.cached_embeddings(self.db, [hashed], self.embedder.model_name)
        # A text embedded whole, or by sentence with only one (the same vector). A message of
        # several sentences is stored as their mean; the query is embedded whole, as any other.
        for by_sentence in (False, True):
            vector, parts = stored.get((hashed, by_sentence), (None, None))
            if vector is not None and parts is None:
                return np.frombuffer(vector, dtype=np.float32)

        def embed() -> np.ndarray:
            return self.embed_texts([query], [hashed], reuse=False, query=True)[0][0]

        try:
            return self._query_embedder.submit(embed).result
        except RuntimeError:  # stopped: no thread to embed on
            return embed()

    async def search(
        self,
        query: str,
        scope: Scope,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Hit]:
        return await self._offload(self.search_sync, query, scope, k, kinds, since, until)

    async def recent_messages(
        self, chat_id: int, limit: int = 50, *, after_id: int = 0
    ) -> list[Message]:
        """The newest ``limit`` messages of the chat with id above ``after_id``, oldest first."""
        return await self.db.run(
            partial(store.recent_messages, after_id=after_id), self.db, chat_id, limit
        )

    async def list_memories(
        self, scope: Scope, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> list[Hit]:
        rows = await self.db.run(store.list_rows, self.db, Filters(scope, kinds), limit)
        return [r.hit(0.0) for r in rows]

    async def fact_history(self, memory_id: int) -> list[Hit]:
        return [r.hit(0.0) for r in await self.db.run(store.history, self.db, memory_id)]

    async def export(self, *, chat_id: int | None = None, user_id: int | None = None) -> dict:
        data = await self.db.run(self.export_sync, chat_id, user_id)
        return data

    def export_sync(self, chat_id: int | None = None, user_id: int | None = None) -> dict:
        """Everything stored for one chat and/or one user (all of it when both are None)."""
        data = store.export_rows(self.db, chat_id=chat_id, user_id=user_id)
        return {
            "exported_at": datetime.now().astimezone().isoformat(),
            "chat_id": chat_id,
            "user_id": user_id,
            **data,
        }

    def stats_sync(self) -> dict[str, Any]:
        out = store.stats(self.db)
        index = self.index
        out["index"] = (
            {"vectors": index.ntotal, "kind": index.kind, "model": index.model, "dim": index.dim}
            if index is not None
            else None
        )
        return out

    # -- facts --------------------------------------------------------------------------------
    def add_fact_sync(
        self, text: str, scope: Scope, *, pinned: bool = False, source: str | None = None
    ) -> FactResult:
        """Without the judge: an unclear fact is added (the CLI and worker threads)."""
        item = self.new(text, scope, "fact", pinned=pinned, source=source)
        return self.facts.add_sync([item], scope, pinned=pinned)[0]

    async def add_fact(
        self, text: str, scope: Scope, *, pinned: bool = False, source: str | None = None
    ) -> FactResult:
        return (await self.facts.add([text], scope, pinned=pinned, source=source))[0]

    async def learn(
        self, turns: list[Message], scope: Scope, extractor: FactExtractor
    ) -> list[FactResult]:
        """Extract facts from ``turns`` and add each (dedupe/supersede as usual)."""
        facts = await extractor.extract(turns)
        return await self.facts.add(facts, scope, source="extracted", skip_bad=True)

    # -- context ------------------------------------------------------------------------------
    async def assemble_context(
        self,
        chat_id: int,
        user_id: int | None,
        incoming: str,
        budget_tokens: int,
        persona: str = "",
        speaker: str = "",
        forwarded_from: str = "",
    ) -> AssembledContext:
        return await ContextAssembler(self).assemble(
            chat_id, user_id, incoming, budget_tokens, persona, speaker, forwarded_from
        )
