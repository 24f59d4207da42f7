"""The FAISS vector index: derived state, rebuilt from SQLite whenever it cannot be trusted.

Exact inner product (``IndexIDMap2`` over ``IndexFlatIP``) while small; past ``exact_max``
vectors an ``IndexIVFFlat`` (trained on the stored vectors) because it supports ``remove_ids``,
so a delete takes effect in the index at once (HNSW cannot remove). Vector ids are the
``memories.id`` of the row.

Each vector's chat is kept beside it so a search can be restricted to one chat: a small chat is
searched exactly over its own vectors, a large one through an ``IDSelectorBatch``. Either way no
other chat's vector can come back.

Saving is atomic: the index and its id/chat table are written under a new generation name and
fsynced, then ``manifest.json`` (count, highest id, model, dimension, file size and sha256) is
replaced in one rename. A loader trusts only what the manifest describes and checks it, so a
file half-written by a killed process is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from loguru import logger

MANIFEST = "manifest.json"
# 2: a conversation turn's key holds the turn before it (upkeep._keys); 3: only the other side's.
# Since then, how rows were keyed is in the manifest (``Manifest.keys``), not in the version.
FORMAT_VERSION = 3


class _Column:
    """A growable int64 column (amortised O(1) appends, unlike repeated np.concatenate)."""

    def __init__(self) -> None:
        self._data = np.zeros(1024, dtype=np.int64)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self._data):
            grown = np.zeros(max(need, 2 * len(self._data)), dtype=np.int64)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = values
        self.size = need

    @property
    def values(self) -> np.ndarray:
        return self._data[: self.size]

    def keep(self, mask: np.ndarray) -> None:
        kept = self.values[mask]
        self._data[: len(kept)] = kept
        self.size = len(kept)


@dataclass
class Manifest:
    count: int
    max_id: int
    model: str
    dim: int
    kind: str
    index_file: str
    table_file: str
    index_bytes: int
    index_sha256: str
    saved_at: float
    version: int = FORMAT_VERSION
    keys: str = ""  # how the vectors were keyed (``VectorIndex.keys``); "" before it was kept


class VectorIndex:
    """Thread-safe wrapper over one FAISS index plus the chat of every vector."""

    def __init__(
        self, dim: int, model: str, *, exact_max: int = 50_000, nprobe: int = 48, keys: str = ""
    ) -> None:
        self.dim = dim
        self.model = model
        # How the caller keys rows (``Memory._keys``: e.g. "turn_context_weight=0"): an index
        # saved with other keys is not loaded, but rebuilt from SQLite.
        self.keys = keys
        self.exact_max = exact_max
        self.nprobe = nprobe
        self.lock = threading.RLock()
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.kind = "flat"
        self._ids = _Column()
        self._chats = _Column()
        self.dirty = 0  # vectors added or removed since the last save

    # -- size -----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def max_id(self) -> int:
        with self.lock:
            return int(self._ids.values.max()) if self._ids.size else 0

    def ids(self) -> np.ndarray:
        with self.lock:
            return self._ids.values.copy()

    # -- writes ---------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray, chats: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self.lock:
            known = np.isin(ids, self._ids.values) if self._ids.size else np.zeros(len(ids), bool)
            if known.any():  # re-adding an id replaces its vector
                self._remove_locked(ids[known])
            self._index.add_with_ids(vectors, ids)
            self._ids.extend(ids)
            self._chats.extend(np.asarray(chats, dtype=np.int64))
            self.dirty += len(ids)
            if self.kind == "flat" and self.ntotal > self.exact_max:
                self._to_ivf()

    def remove(self, ids: np.ndarray | list[int]) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        with self.lock:
            return self._remove_locked(ids)

    def _remove_locked(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        # IDSelectorArray: the only selector an IVF hash-table direct map can remove with.
        removed = int(self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
        if removed:
            mask = ~np.isin(self._ids.values, ids)
            self._ids.keep(mask)
            self._chats.keep(mask)
            self.dirty += removed
        return removed

    def _all_vectors(self) -> np.ndarray:
        ids = self._ids.values
        return self._reconstruct(ids)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def _to_ivf(self) -> None:
        """Move to an approximate index once exact search would get slow."""
        started = time.monotonic()
        ids = self._ids.values.copy()
        vectors = self._all_vectors()
        self._index = self._build_ivf(vectors, ids)
        self.kind = "ivf"
        logger.info(
            "vector index: {} vectors moved to IVF in {:.1f} s",
            len(ids),
            time.monotonic() - started,
        )

    def _build_ivf(self, vectors: np.ndarray, ids: np.ndarray) -> Any:
        n = len(vectors)
        # ~4 sqrt(n) lists, but at least 39 training points a list (FAISS's own minimum).
        nlist = int(max(8, min(65536, 4 * math.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors if n <= nlist * 50 else vectors[rng.choice(n, nlist * 50, replace=False)]
        index.train(np.ascontiguousarray(sample))
        # A hash-table direct map lets us reconstruct vectors by id and still remove ids.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        index.nprobe = self.nprobe
        index.add_with_ids(np.ascontiguousarray(vectors), ids)
        return index

    # -- search ---------------------------------------------------------------------------
    def search(
        self,
        query: np.ndarray,
        k: int,
        chat_id: int | None = None,
        *,
        among: Sequence[int] | np.ndarray | None = None,
    ) -> list[tuple[int, float]]:
        """Top ``k`` (id, inner product) for a unit query, restricted to ``chat_id`` if given.
        ``among``: exact search over just those ids (the few rows a narrow filter lets through;
        ids not in the index are left out)."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self.lock:
            total = self.ntotal
            if total == 0 or k <= 0:
                return []
            if among is not None:
                wanted = np.asarray(among, dtype=np.int64)
                present = wanted[np.isin(wanted, self._ids.values)]
                scores = self._reconstruct(present) @ query[0]
                top = np.argsort(-scores)[:k]
                return [(int(present[i]), float(scores[i])) for i in top]
            if chat_id is None:
                subset = None
            else:
                subset = self._ids.values[self._chats.values == chat_id]
                if len(subset) == 0:
                    return []
                if len(subset) == total:
                    subset = None
            if subset is not None and (self.kind == "flat" or len(subset) <= self.exact_max):
                # Exact over the chat's own vectors: right for small chats inside a big index,
                # where an IVF probe of a few lists could miss them.
                vectors = self._reconstruct(subset)
                scores = vectors @ query[0]
                top = np.argsort(-scores)[:k]
                return [(int(subset[i]), float(scores[i])) for i in top]
            params = None
            if subset is not None:
                selector = faiss.IDSelectorBatch(len(subset), faiss.swig_ptr(subset))
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe * 2)  # type: ignore[call-arg]
                scores, ids = self._index.search(query, min(k, total), params=params)
            else:
                scores, ids = self._index.search(query, min(k, total))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: Path) -> Manifest:
        """Write a new generation and switch the manifest to it atomically."""
        directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            generation = f"{time.time_ns()}"
            index_file = f"vectors-{generation}.faiss"
            table_file = f"table-{generation}.npy"
            table = (
                np.stack([self._ids.values, self._chats.values])
                if self._ids.size
                else np.zeros((2, 0), np.int64)
            )
            try:
                faiss.write_index(self._index, str(directory / (index_file + ".tmp")))
                with open(directory / (table_file + ".tmp"), "wb") as f:
                    np.save(f, table)
            except BaseException:
                _discard(directory, index_file, table_file)
                raise
            count, max_id, kind = self.ntotal, self.max_id, self.kind
            self.dirty = 0
        try:  # outside the lock: searches and additions need not wait for the disk
            for name in (index_file, table_file):
                _fsync_file(directory / (name + ".tmp"))
        except BaseException:
            _discard(directory, index_file, table_file)
            raise
        for name in (index_file, table_file):
            os.replace(directory / (name + ".tmp"), directory / name)
        manifest = Manifest(
            count=count,
            max_id=max_id,
            model=self.model,
            dim=self.dim,
            kind=kind,
            index_file=index_file,
            table_file=table_file,
            index_bytes=(directory / index_file).stat().st_size,
            index_sha256=_sha256(directory / index_file),
            saved_at=time.time(),
            keys=self.keys,
        )
        tmp = directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest.__dict__, indent=1))
        _fsync_file(tmp)
        os.replace(tmp, directory / MANIFEST)
        _fsync_dir(directory)
        for old in directory.iterdir():  # earlier generations and leftovers of killed saves
            if old.name not in (MANIFEST, index_file, table_file):
                old.unlink(missing_ok=True)
        return manifest

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        dim: int,
        model: str,
        exact_max: int = 50_000,
        nprobe: int = 48,
        keys: str = "",
    ) -> tuple[VectorIndex | None, str]:
        """The saved index if the manifest and files check out, else (None, why not)."""
        path = directory / MANIFEST
        if not path.exists():
            return None, "no saved index"
        try:
            raw = json.loads(path.read_text())
            manifest = Manifest(**raw)
        except (ValueError, TypeError) as exc:
            return None, f"unreadable manifest ({exc})"
        if manifest.version != FORMAT_VERSION:
            return None, f"index format {manifest.version}, expected {FORMAT_VERSION}"
        if manifest.model != model or manifest.dim != dim:
            return None, f"made with {manifest.model}/{manifest.dim}, now {model}/{dim}"
        if manifest.keys != keys:
            return (
                None,
                f"keyed {manifest.keys or 'by an earlier version'}, now {keys or 'plainly'}",
            )
        index_path = directory / manifest.index_file
        if not index_path.exists() or index_path.stat().st_size != manifest.index_bytes:
            return None, "index file missing or of the wrong size"
        if _sha256(index_path) != manifest.index_sha256:
            return None, "index file checksum mismatch"
        try:
            index = faiss.read_index(str(index_path))
            table = np.load(directory / manifest.table_file)
        except Exception as exc:  # faiss raises RuntimeError; numpy ValueError/OSError
            return None, f"cannot read the index ({exc})"
        if index.ntotal != manifest.count or index.d != dim or table.shape != (2, manifest.count):
            return None, "index contents disagree with the manifest"
        out = cls(dim, model, exact_max=exact_max, nprobe=nprobe, keys=keys)
        out._index = index
        out.kind = manifest.kind
        if out.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = nprobe
        out._ids.extend(table[0])
        out._chats.extend(table[1])
        return out, "ok"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _discard(directory: Path, *names: str) -> None:
    """A save cut short (a full disk): give back what its half-written files hold."""
    for name in names:
        (directory / (name + ".tmp")).unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
