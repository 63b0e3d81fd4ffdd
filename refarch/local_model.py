"""The local embedding model: a sentence-transformers model on this machine's CPU.

The default, all-MiniLM-L6-v2, is a 6-layer BERT encoder followed by mean pooling over its tokens
and L2 normalisation (its `modules.json`: Transformer → Pooling → Normalize). `BertEncoder` runs
exactly that in plain torch, from the model directory's weights and Rust tokenizer, and loads in
about 4 s of CPU. The sentence-transformers library gives the same vectors
(tests/integration/test_local_model.py compares them) but imports transformers, scikit-learn, scipy and
sympy on the way: about 15 s of CPU, paid by every local Emu worker, every `refarch demo` start
and every test stack. Any other model (another architecture or pooling, or a name to fetch from the
Hugging Face hub) is still run by sentence-transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

# What BertEncoder runs: these three modules, in this order (a model directory's modules.json).
BERT_MEAN_POOLING = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


class SentenceModel(Protocol):
    """What the local embedder needs of a model."""

    dimension: int
    max_seq_length: int  # the window, [CLS] and [SEP] included; longer input is cut

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]: ...

    def tokenizer(self) -> Any:
        """The model's `tokenizers.Tokenizer`, without truncation or padding (to measure texts whole)."""
        ...


def load_sentence_model(name_or_path: str) -> SentenceModel:
    """A model directory BertEncoder can run, else sentence-transformers (a directory or a hub name)."""
    path = Path(name_or_path)
    if BertEncoder.runs(path):
        return BertEncoder(path)
    return SentenceTransformersModel(name_or_path)


class BertEncoder:
    """A BERT encoder with mean pooling and normalisation, from one model directory."""

    @staticmethod
    def runs(path: Path) -> bool:
        """Whether the directory holds a model of this shape (anything else goes to sentence-transformers)."""
        try:
            modules = [module["type"] for module in json.loads((path / "modules.json").read_text())]
            config = json.loads((path / "config.json").read_text())
            pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return False
        modes = {key for key, on in pooling.items() if key.startswith("pooling_mode_") and on is True}
        return (
            modules == BERT_MEAN_POOLING
            and config.get("model_type") == "bert"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act") == "gelu"
            and modes == {"pooling_mode_mean_tokens"}
            and (path / "model.safetensors").is_file()
            and (path / "tokenizer.json").is_file()
        )

    def __init__(self, path: Path) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.dimension = int(config["hidden_size"])
        self.max_seq_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.weights: dict[str, torch.Tensor] = load_file(str(path / "model.safetensors"))
        self._tokenizer_file = str(path / "tokenizer.json")
        self._batch_tokenizer = Tokenizer.from_file(self._tokenizer_file)
        self._batch_tokenizer.enable_truncation(self.max_seq_length)
        self._batch_tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

    def tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        whole = Tokenizer.from_file(self._tokenizer_file)
        whole.no_truncation()
        whole.no_padding()
        return whole

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        """One normalised vector per text, in order; texts of similar length share a batch (less padding)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                encodings = self._batch_tokenizer.encode_batch([texts[i] for i in batch])
                ids = torch.tensor([encoding.ids for encoding in encodings])
                mask = torch.tensor([encoding.attention_mask for encoding in encodings])
                for i, vector in zip(batch, self._forward(ids, mask).tolist(), strict=True):
                    vectors[i] = vector
        return vectors

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        w = self.weights
        batch, length = ids.shape

        def linear(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def norm(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (batch, length, width) → (batch, heads, length, width/heads)
            return x.view(batch, length, self.heads, -1).transpose(1, 2)

        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = norm(x, "embeddings.LayerNorm")
        padding = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # never attend to padding
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"
            q, k, v = (heads(linear(x, f"{layer}.attention.self.{part}")) for part in ("query", "key", "value"))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=padding).transpose(1, 2).flatten(2)
            x = norm(x + linear(attended, f"{layer}.attention.output.dense"), f"{layer}.attention.output.LayerNorm")
            x = norm(
                x + linear(F.gelu(linear(x, f"{layer}.intermediate.dense")), f"{layer}.output.dense"),
                f"{layer}.output.LayerNorm",
            )
        weights = mask[:, :, None].to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


class SentenceTransformersModel:
    """Any other model, run by the sentence-transformers library."""

    def __init__(self, name_or_path: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(name_or_path, device="cpu")
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"embedding model {name_or_path} does not report its vector dimension")
        self.dimension = int(dimension)
        self.max_seq_length = int(self._model.max_seq_length or 256)

    def tokenizer(self) -> Any:
        import copy

        whole = copy.deepcopy(self._model.tokenizer.backend_tokenizer)
        whole.no_truncation()
        whole.no_padding()
        return whole

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        array = self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        vectors: list[list[float]] = array.tolist()
        return vectors
