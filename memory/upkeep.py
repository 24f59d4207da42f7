"""The vector side of ``Memory``: loading the model, opening or rebuilding the FAISS index from
SQLite, embedding (with reuse by content hash), catching up rows stored without a vector, and
the index's health check; and reading the times memories' words tell of (memory m008), derived
state too. A mixin so that ``Memory`` keeps one public surface; it relies on the
attributes ``Memory.__init__`` sets (declared below for the type checker).

Another process may write the same database (``familiar memory add`` beside the daemon). SQLite's
``data_version`` tells when that happened, at the cost of one PRAGMA: a search then first adds
the vectors stored above the highest id the index holds, and the health tick reconciles the
whole index with SQLite (rows deleted, rows re-embedded below that id), so rows from elsewhere
are searchable and not reported as a degraded index. A disagreement with no write from
elsewhere behind it is still reported: the fix for that is a reindex.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import tzinfo
from pathlib import Path

import numpy as np
from loguru import logger

from memory import store
from memory.db import Database
from memory.embedder import Embedder
from memory.health import CheckFn, CheckResult, Status
from memory.index import VectorIndex
from memory.settings import MemorySettings
from memory.store import NewMemory
from memory.text import sentences
from memory.types import SENTENCE_KINDS

Progress = Callable[[int, int], None]


class VectorUpkeep:
    db: Database
    embedder: Embedder
    settings: MemorySettings
    index_dir: Path
    index: VectorIndex | None
    tz: tzinfo
    warm_error: BaseException | None
    _guard: threading.RLock
    _save_lock: threading.Lock
    _stopping: bool
    # SQLite's data_version when the index last caught up with other processes' writes: by a
    # full reconcile (health), and from the highest indexed id (search).
    _synced_version: int | None
    _topped_version: int | None

    @property
    def ready(self) -> bool:
        return self.index is not None and self.embedder.ready

    def tell_times(self, items: Sequence[NewMemory]) -> None:
        """The times the words of rows about to be stored tell of. Derived: on a failure the
        rows are stored unread and read at the next warm-up."""
        try:
            store.tell_times(items, self.tz)
        except Exception as exc:
            for item in items:
                item.about, item.about_read = None, False
            logger.warning("the times told of in new memories were not read: {}", exc)

    def catch_up_times_told(self) -> None:
        """Read the times told of in rows stored before memory m008 (or stored by a process
        that stopped before it read them), and all again when the chats' time zone changed, in
        batches, until none is left or the memory stops."""
        started, read = time.monotonic(), 0
        try:
            if store.times_told_in(self.db, self.tz):
                logger.info(
                    "the time zone, or how times are read, changed: reading the times told of again"
                )
            while not self._stopping and (done := store.read_times_told(self.db, self.tz)):
                read += done
        except Exception as exc:  # derived: search goes on with what was read
            logger.warning("the times told of in memories were not all read: {}", exc)
        if read:
            logger.info(
                "read the times told of in {} memories in {:.1f} s",
                read,
                time.monotonic() - started,
            )

    def warm_sync(self, progress: Progress | None = None) -> None:
        """Load the embedder, open (or rebuild) the index, embed what is pending, catch up."""
        try:
            started = time.monotonic()
            self.embedder.load()
            if self._stopping:  # stopped while the model loaded: nothing more to do
                return
            index = self._open_index()
            self._reconcile(index)
            with self._guard:
                version = self.db.data_version()
                self._reconcile(index)  # rows committed while we were loading
                self._synced_version = self._topped_version = version
                self.index = index
            self.embed_pending(progress)
            logger.info(
                "memory ready: {} vectors in {:.1f} s", index.ntotal, time.monotonic() - started
            )
            self.catch_up_times_told()
        except BaseException as exc:
            self.warm_error = exc
            if self._stopping:  # the daemon stopped (and closed the database) while we loaded
                logger.debug("memory warm-up ended by the stop: {}", exc)
            else:
                logger.opt(exception=exc).error(
                    "memory warm-up failed; search stays full-text only"
                )
            raise

    def _open_index(self) -> VectorIndex:
        s, e = self.settings, self.embedder
        keys = f"turn_context_weight={s.turn_context_weight:g}"
        index, why = VectorIndex.load(
            self.index_dir,
            dim=e.dim,
            model=e.model_name,
            exact_max=s.exact_index_max,
            nprobe=s.ivf_nprobe,
            keys=keys,
        )
        if index is None:
            logger.info("vector index: rebuilding from SQLite ({})", why)
            index = VectorIndex(
                e.dim, e.model_name, exact_max=s.exact_index_max, nprobe=s.ivf_nprobe, keys=keys
            )
        return index

    def catch_up_sync(self, *, full: bool = False) -> int:
        """Follow what other processes committed since the last look; returns how many vectors
        were added. Without ``full`` only rows above the highest indexed id are added (a few
        indexed reads: fit for every search); ``full`` reconciles the whole index."""
        index = self.index
        if index is None or self._stopping:
            return 0
        version = self.db.data_version()  # read first: a commit after it is seen next time
        if version == (self._synced_version if full else self._topped_version):
            return 0
        with self._guard:
            if full:
                added = self._reconcile(index)
                self._synced_version = version
            else:
                ids, _ = store.embedded_ids(self.db, index.model, after_id=index.max_id)
                added = self._add_from_sqlite(index, ids)
                if added:
                    logger.info("vector index: {} vector(s) another process stored", added)
            self._topped_version = version
        if added:
            self._maybe_save()
        return added

    def catch_up_for_search(self) -> None:
        """Rows another process (the CLI) stored since the last search; a failure is logged and
        the search goes on with the index as it is."""
        try:
            self.catch_up_sync()
        except Exception:
            logger.opt(exception=True).warning("vector index: catching up failed")

    def _add_from_sqlite(self, index: VectorIndex, ids: np.ndarray) -> int:
        added = 0
        for start in range(0, len(ids), 20_000):
            got, chats, vectors = store.vectors_for(
                self.db, ids[start : start + 20_000].tolist(), index.dim
            )
            index.add(got, self._keys(got, vectors, index.model), chats)
            added += len(got)
        return added

    def _reconcile(self, index: VectorIndex) -> int:
        """Make the index hold exactly the rows SQLite has vectors for (this model)."""
        db_ids, _ = store.embedded_ids(self.db, index.model)
        have = index.ids()
        extra = np.setdiff1d(have, db_ids, assume_unique=True)
        missing = np.setdiff1d(db_ids, have, assume_unique=True)
        if len(extra):
            index.remove(extra)
        added = self._add_from_sqlite(index, missing)
        if len(extra) or len(missing):
            logger.info("vector index: caught up (+{} -{})", len(missing), len(extra))
        return added

    def save_index(self) -> None:
        with self._save_lock:
            index = self.index
            if index is not None and (
                index.dirty or not (self.index_dir / "manifest.json").exists()
            ):
                index.save(self.index_dir)

    def _maybe_save(self) -> None:
        """Save after ``index_save_every`` new vectors, or after a quarter of the index, when
        that is more: a save rewrites the whole file, so saving at a fixed step would make a
        bulk import write O(n^2) bytes (at 100k vectors, 150 MB every 2,000 rows)."""
        index = self.index
        if index is not None and index.dirty >= max(
            self.settings.index_save_every, index.ntotal // 4
        ):
            self.save_index()

    # -- embedding ----------------------------------------------------------------------------
    def vectors(
        self,
        texts: Sequence[str],
        hashes: Sequence[str],
        by_sentence: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """Unit vectors for ``texts``, reusing stored ones with the same hash and model."""
        return self.embed_texts(texts, hashes, by_sentence)[0]

    def embed_texts(
        self,
        texts: Sequence[str],
        hashes: Sequence[str],
        by_sentence: Sequence[bool] | None = None,
        *,
        reuse: bool = True,
        query: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Unit vectors for ``texts`` and, for a text embedded ``by_sentence`` that has two
        sentences or more, its sentences' vectors (its "parts"; its vector is then their
        normalised mean, at the cost of one encoding of the text). A text longer than the model
        reads is embedded in pieces that fit, averaged. Stored vectors with the same hash, model
        and way are reused (unless not ``reuse``: then the database is not read). ``query``: the text
        is a search's query, embedded by ``Embedder.embed_query``."""
        e = self.embedder
        flags = list(by_sentence) if by_sentence is not None else [False] * len(texts)
        cached = store.cached_embeddings(self.db, hashes, e.model_name) if reuse else {}
        out = np.zeros((len(texts), e.dim), dtype=np.float32)
        parts: list[np.ndarray | None] = [None] * len(texts)
        todo: dict[tuple[str, bool], list[int]] = {}
        for i, key in enumerate(zip(hashes, flags, strict=True)):
            hit = cached.get(key)
            if hit is None:
                todo.setdefault(key, []).append(i)
                continue
            out[i] = np.frombuffer(hit[0], dtype=np.float32)
            if hit[1] is not None:
                parts[i] = store.parts_array(hit[1], e.dim)
        if not todo:
            return out, parts
        units: list[list[str]] = []  # per text to embed: its sentences, or the text alone
        for (_, by), rows in todo.items():
            found = sentences(texts[rows[0]]) if by else []
            units.append(found if len(found) > 1 else [texts[rows[0]]])
        pieces: list[str] = []
        owners: list[int] = []  # the unit each piece belongs to, numbered across all texts
        for unit, text in enumerate(u for us in units for u in us):
            for piece in e.pieces(text, self.settings.embed_chunk_chars):
                pieces.append(piece)
                owners.append(unit)
        unit_vectors = np.zeros((sum(map(len, units)), e.dim), dtype=np.float32)
        embed = e.embed_query if query else e.embed
        np.add.at(unit_vectors, np.array(owners), embed(pieces))
        unit_vectors /= np.maximum(np.linalg.norm(unit_vectors, axis=1, keepdims=True), 1e-12)
        first = 0
        for us, rows in zip(units, todo.values(), strict=True):
            own = unit_vectors[first : first + len(us)]
            first += len(us)
            mean = own.sum(axis=0)
            out[rows] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            if len(us) > 1:
                for i in rows:
                    parts[i] = own
        return out, parts

    def embed_items(self, items: Sequence[NewMemory]) -> None:
        """Give rows about to be stored their vectors (and sentence vectors, by kind)."""
        if not items:
            return
        vectors, parts = self.embed_texts(
            [m.text for m in items],
            [m.content_hash for m in items],
            [m.kind in SENTENCE_KINDS for m in items],
        )
        for m, v, p in zip(items, vectors, parts, strict=True):
            m.embedding, m.model, m.parts = v, self.embedder.model_name, p

    def embed_pending(self, progress: Progress | None = None) -> int:
        """Embed rows stored without a vector of the current model; returns how many."""
        batch = self.settings.embedding_batch_size * 4
        done, after = 0, 0
        while not self._stopping:
            rows = store.pending_embeddings(self.db, self.embedder.model_name, after, batch)
            if not rows:
                return done
            ids = [r[0] for r in rows]
            vectors, parts = self.embed_texts(
                [r[1] for r in rows], [r[2] for r in rows], [r[3] in SENTENCE_KINDS for r in rows]
            )
            store.set_embeddings(self.db, ids, vectors, self.embedder.model_name, parts)
            self._index_add(ids, vectors)
            done += len(rows)
            after = ids[-1]
            if progress:
                progress(done, 0)
        return done

    def _index_add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        with self._guard:
            if self.index is None:
                return
            chats = store.chats_of(self.db, ids)
            self.index.add(
                np.array(ids, dtype=np.int64),
                self._keys(ids, vectors, self.index.model),
                np.array([chats[i] for i in ids]),
            )
        self._maybe_save()

    @property
    def keyed_with_neighbours(self) -> bool:
        """Whether a turn's key holds the turn before it (``turn_context_weight`` > 0): only
        then does forgetting a turn change another's key."""
        return self.settings.turn_context_weight > 0

    def _keys(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray, model: str) -> np.ndarray:
        """The vectors the index holds: a conversation turn's own vector plus
        ``turn_context_weight`` of the turn before it, renormalised; any other row's own.

        An answer often shares nothing with the question about it but the turn it answers
        ("They're called Peruvian Lilies" after "What kind are those flowers?"): keyed with that
        turn, it is found by the question. The stored embedding stays the turn's own (it is
        reused by content hash), so the keys are derived state like the index itself."""
        weight = self.settings.turn_context_weight
        if not self.keyed_with_neighbours or not len(ids):
            return vectors
        before = store.previous_turn_vectors(self.db, [int(i) for i in ids], model)
        if not before:
            return vectors
        keys = np.array(vectors, dtype=np.float32, copy=True)
        for n, i in enumerate(ids):
            blob = before.get(int(i))
            if blob is not None and len(blob) == 4 * keys.shape[1]:
                keys[n] += weight * np.frombuffer(blob, dtype=np.float32)
        keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        return keys

    def _rekey(self, ids: Sequence[int]) -> None:
        """Key these rows again from SQLite (the turn before them was deleted: its words must
        not stay in their keys)."""
        with self._guard:
            index = self.index
            if index is None or not len(ids):
                return
            found, chats, vectors = store.vectors_for(self.db, list(ids), index.dim)
            index.remove(found)
            index.add(found, self._keys(found, vectors, index.model), chats)

    def health_checks(self) -> dict[str, CheckFn]:
        def index_check() -> CheckResult:
            if self.warm_error is not None:
                return CheckResult(
                    "memory_index", Status.DEGRADED, f"dense search off: {self.warm_error}"
                )
            index = self.index
            if index is None:
                return CheckResult(
                    "memory_index", Status.DEGRADED, "still loading; full-text search only"
                )
            self.catch_up_sync(full=True)  # what another process wrote is no fault
            db_ids, _ = store.embedded_ids(self.db, index.model)
            if len(db_ids) != index.ntotal:
                return CheckResult(
                    "memory_index",
                    Status.DEGRADED,
                    f"index has {index.ntotal} vectors, SQLite {len(db_ids)}; run `familiar memory reindex`",
                )
            return CheckResult(
                "memory_index",
                Status.HEALTHY,
                f"{index.ntotal} vectors ({index.kind}, {index.model})",
            )

        return {"memory_index": index_check}
