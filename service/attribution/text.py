"""Text support: reference token baselines, an interpretable embedding layer (attribute to
embeddings instead of token ids), and per-token scores from embedding-dimension attributions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._common import AttributionInputError


class TokenReferenceBase:
    """Builds a reference (baseline) sequence made of one token, e.g. padding."""

    def __init__(self, reference_token_idx: int = 0) -> None:
        if isinstance(reference_token_idx, bool) or not isinstance(reference_token_idx, int):
            raise TypeError("`reference_token_idx` must be an int, "
                            f"got {type(reference_token_idx).__name__}")
        self.reference_token_idx = reference_token_idx

    def generate_reference(self, sequence_length: int, device: torch.device | str) -> Tensor:
        """A (sequence_length,) long tensor of the reference token."""
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) \
                or sequence_length < 0:
            raise ValueError(f"`sequence_length` must be a non-negative int, got {sequence_length!r}")
        return torch.full((sequence_length,), self.reference_token_idx, dtype=torch.long,
                          device=device)


class InterpretableEmbeddingBase(nn.Module):
    """Stands in for an embedding layer so that the model takes embeddings: its forward returns
    its (first) argument unchanged; ``indices_to_embeddings`` runs the wrapped embedding."""

    def __init__(self, embedding: nn.Module, full_name: str) -> None:
        super().__init__()
        self.num_embeddings = getattr(embedding, "num_embeddings", None)
        self.embedding_dim = getattr(embedding, "embedding_dim", None)
        self.embedding = embedding
        self.full_name = full_name

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if inputs:
            return inputs[0]
        if kwargs:
            return next(iter(kwargs.values()))
        raise ValueError("InterpretableEmbeddingBase needs the embeddings as its argument")

    def indices_to_embeddings(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """Token ids -> embeddings, with the original embedding layer."""
        return self.embedding(*inputs, **kwargs)


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the dotted submodule ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"`embedding_layer_name` must be a dotted module name, got {name!r}")
    parent: nn.Module = model
    *path, leaf = name.split(".")
    for part in path:
        child = getattr(parent, part, None)
        if not isinstance(child, nn.Module):
            raise ValueError(f"`embedding_layer_name` {name!r}: the model has no submodule {part!r}")
        parent = child
    if not isinstance(getattr(parent, leaf, None), nn.Module):
        raise ValueError(f"`embedding_layer_name` {name!r}: the model has no submodule {leaf!r}")
    return parent, leaf


def configure_interpretable_embedding_layer(
        model: nn.Module, embedding_layer_name: str = "embedding") -> InterpretableEmbeddingBase:
    """Replaces the model's embedding layer with an ``InterpretableEmbeddingBase`` (so the model
    takes embeddings) and returns it. Undo with ``remove_interpretable_embedding_layer``."""
    parent, leaf = _resolve(model, embedding_layer_name)
    embedding = getattr(parent, leaf)
    if isinstance(embedding, InterpretableEmbeddingBase):
        raise AttributionInputError(
            f"`{embedding_layer_name}` is already an interpretable embedding layer")
    wrapper = InterpretableEmbeddingBase(embedding, embedding_layer_name)
    setattr(parent, leaf, wrapper)
    return wrapper


def remove_interpretable_embedding_layer(model: nn.Module,
                                         interpretable_emb: InterpretableEmbeddingBase) -> None:
    """Puts the original embedding layer back in place of ``interpretable_emb``."""
    if not isinstance(interpretable_emb, InterpretableEmbeddingBase):
        raise TypeError("`interpretable_emb` must be the InterpretableEmbeddingBase returned by "
                        "configure_interpretable_embedding_layer")
    parent, leaf = _resolve(model, interpretable_emb.full_name)
    if getattr(parent, leaf) is not interpretable_emb:
        raise ValueError(f"the model's `{interpretable_emb.full_name}` is not this interpretable "
                         "embedding layer")
    setattr(parent, leaf, interpretable_emb.embedding)


def token_attributions(attributions: Tensor, normalize: bool = False) -> Tensor:
    """One score per token: embedding-dimension attributions (..., tokens, dim) summed over the
    last dimension; with ``normalize`` each sequence is divided by its L2 norm (as in Captum's
    text tutorials), leaving all-zero sequences at zero."""
    if not isinstance(attributions, Tensor) or attributions.dim() < 2:
        raise ValueError("`attributions` must be a tensor of shape (..., tokens, embedding_dim)")
    scores = attributions.sum(-1)
    if normalize:
        norm = scores.norm(dim=-1, keepdim=True)
        scores = scores / torch.where(norm == 0, torch.ones_like(norm), norm)
    return scores
