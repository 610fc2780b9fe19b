"""Interpretable inputs: the bridge between a prompt and the perturbation algorithms (Captum 0.9).

An ``InterpretableInput`` holds a model input (a text, a token tensor, an image) together with
its interpretable representation ``x'``: a ``(1, n_itp_features)`` tensor of ones, one entry per
feature a person can reason about (a template slot, a token, an image segment). The algorithms
perturb ``x'`` (0 = feature absent); ``to_model_input(x')`` maps a perturbed ``x'`` back to what
the model consumes, with absent features replaced by their baselines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from ._common import AttributionInputError


class TokenizerLike(Protocol):
    """What the LLM classes need of a tokenizer (Hugging Face's names; no transformers import)."""

    def encode(self, text: str, add_special_tokens: bool = True,
               return_tensors: str | None = None) -> Any: ...

    def decode(self, token_ids: Tensor) -> str: ...

    def convert_ids_to_tokens(self, token_ids: Any) -> Any: ...

    def convert_tokens_to_ids(self, tokens: Any) -> Any: ...


def _spread_by_mask(itp_attr: Tensor, mask: Tensor) -> Tensor:
    """Give every raw element the attribution of its interpretable group.

    ``itp_attr``: ``(*out, n_itp)``; ``mask``: ``(*raw)`` of group indices in ``[0, n_itp)``.
    Returns ``(*out, *raw)``.
    """
    flat = mask.reshape(-1).long().to(itp_attr.device)            # (n_raw,)
    spread = itp_attr.index_select(-1, flat)                       # (*out, n_raw)
    return spread.reshape(*itp_attr.shape[:-1], *mask.shape)


class InterpretableInput(ABC):
    """An input with an interpretable representation (Captum's ``InterpretableInput``).

    Subclasses set ``n_itp_features`` and ``values`` (one display string per feature) and
    implement ``to_tensor`` and ``to_model_input``.
    """

    n_itp_features: int
    values: list[str]

    @abstractmethod
    def to_tensor(self) -> Tensor:
        """The unperturbed interpretable representation, ``(1, n_itp_features)``."""

    @abstractmethod
    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Any:
        """The model input for a (perturbed) representation; ``None`` gives the original."""

    def format_attr(self, itp_attr: Tensor) -> Tensor:
        """Map attributions of the interpretable features to the form shown to the user."""
        return itp_attr


class TextTemplateInput(InterpretableInput):
    """A text built from a template whose slots (``values``) are the features.

    ``template`` is a ``str.format`` string or a callable taking the values (positionally for a
    list, by keyword for a dict). An absent slot takes its baseline (default ``""``);
    ``baselines`` may be a callable (e.g. ``ProductBaselines``) sampled at every perturbation.
    ``mask`` groups slots into one feature (same id = perturbed together).
    """

    def __init__(self, template: str | Callable[..., str],
                 values: list[str] | dict[str, str],
                 baselines: list[str] | dict[str, str] | Callable[[], Any] | None = None,
                 mask: list[int] | dict[str, int] | None = None) -> None:
        if isinstance(values, dict):
            dict_keys = list(values)
            values = [values[k] for k in dict_keys]
        elif isinstance(values, list):
            dict_keys = []
        else:
            raise AttributionInputError(
                f"values must be a list or a dict, got {type(values).__name__}")
        self.values = values
        self.dict_keys = dict_keys
        self.n_features = len(values)

        if baselines is None:
            baselines = [""] * len(values)
        elif not callable(baselines):
            baselines = self._as_list(baselines, "baselines")
            if len(baselines) != len(values):
                raise AttributionInputError(
                    f"baselines has {len(baselines)} entries, values has {len(values)}")
        self.baselines = baselines

        if mask is None:
            self.n_itp_features = self.n_features
        else:
            mask = self._as_list(mask, "mask")
            if len(mask) != len(values):
                raise AttributionInputError(
                    f"mask has {len(mask)} entries, values has {len(values)}")
            ids = sorted(set(mask))
            index = {mid: i for i, mid in enumerate(ids)}
            self.formatted_mask = [index[mid] for mid in mask]   # dense ids 0..n_itp-1
            self.n_itp_features = len(ids)
        self.mask = mask

        self.template = template
        if isinstance(template, str):
            self.format_fn: Callable[..., str] = template.format
        elif callable(template):
            self.format_fn = template
        else:
            raise AttributionInputError(
                f"template must be a str or a callable, got {type(template).__name__}")

    def _as_list(self, arg: Any, name: str) -> list:
        """A list or dict argument in the order of ``values``."""
        if self.dict_keys:
            if not isinstance(arg, dict):
                raise AttributionInputError(
                    f"values is a dict, so {name} must be a dict too, got {type(arg).__name__}")
            return [arg[k] for k in self.dict_keys]
        if not isinstance(arg, list):
            raise AttributionInputError(
                f"values is a list, so {name} must be a list too, got {type(arg).__name__}")
        return list(arg)

    def to_tensor(self) -> Tensor:
        return torch.ones(1, self.n_itp_features)                  # (1, n_itp)

    def _itp_index(self, i: int) -> int:
        return self.formatted_mask[i] if self.mask is not None else i

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> str:
        values = list(self.values)
        if perturbed_tensor is not None:
            baselines = self.baselines() if callable(self.baselines) else self.baselines
            if callable(self.baselines):
                baselines = self._as_list(baselines, "baselines()")
            present = perturbed_tensor[0]                           # (n_itp,)
            for i in range(len(values)):
                if not present[self._itp_index(i)]:
                    values[i] = baselines[i]
        if self.dict_keys:
            return self.format_fn(**dict(zip(self.dict_keys, values)))
        return self.format_fn(*values)

    def format_attr(self, itp_attr: Tensor) -> Tensor:
        """``(*out, n_itp)`` -> ``(*out, n_features)``: grouped slots share their attribution."""
        if self.mask is None:
            return itp_attr
        return _spread_by_mask(itp_attr, torch.tensor(self.formatted_mask))


class TextTokenInput(InterpretableInput):
    """A text whose tokens (under ``tokenizer``) are the features.

    The model input is the token-id tensor ``(1, n_tokens)``; an absent token becomes
    ``baselines`` (a token id, or a token string converted by the tokenizer; default 0).
    ``skip_tokens`` (ids or strings) stay in the model input but are not features.
    """

    def __init__(self, text: str, tokenizer: TokenizerLike, baselines: int | str = 0,
                 skip_tokens: list[int] | list[str] | None = None) -> None:
        inp_tensor = tokenizer.encode(text, return_tensors="pt")   # (1, n_tokens)
        self.inp_tensor = inp_tensor
        self.itp_tensor = inp_tensor                                # (1, n_itp)
        self.itp_mask: Tensor | None = None                         # (1, n_tokens) bool
        if skip_tokens:
            if isinstance(skip_tokens[0], str):
                skip_tokens = list(tokenizer.convert_tokens_to_ids(list(skip_tokens)))
            skipped = torch.tensor(list(skip_tokens), dtype=inp_tensor.dtype)
            self.itp_mask = ~torch.isin(inp_tensor, skipped)
            self.itp_tensor = inp_tensor[self.itp_mask].unsqueeze(0)
        self.skip_tokens = skip_tokens
        self.tokenizer = tokenizer
        self.values = list(tokenizer.convert_ids_to_tokens(self.itp_tensor[0].tolist()))
        self.n_itp_features = len(self.values)
        if isinstance(baselines, str):
            baselines = tokenizer.convert_tokens_to_ids([baselines])[0]
        elif type(baselines) is not int:
            raise AttributionInputError(
                f"baselines must be a token id (int) or a token (str), got "
                f"{type(baselines).__name__}")
        self.baselines = baselines

    def to_tensor(self) -> Tensor:
        return torch.ones_like(self.itp_tensor)                    # (1, n_itp)

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Tensor:
        """Token ids ``(batch, n_tokens)``; ``perturbed_tensor`` is ``(batch, n_itp)``.

        A batch (several perturbations at once, or a gradient method's scaled inputs) gives one
        row of ids per row; any entry other than 1 counts as absent.
        """
        if perturbed_tensor is None:
            return self.inp_tensor
        device = perturbed_tensor.device
        batch = perturbed_tensor.size(0)
        itp_ids = self.itp_tensor.to(device).expand(batch, -1).clone()   # (batch, n_itp)
        itp_ids[perturbed_tensor != 1] = self.baselines
        if self.itp_mask is None:
            return itp_ids
        ids = self.inp_tensor.to(device).expand(batch, -1).clone()        # (batch, n_tokens)
        ids[self.itp_mask.to(device).expand(batch, -1)] = itp_ids.reshape(-1)
        return ids


class ImageMaskInput(InterpretableInput):
    """An image whose segments are the features (Captum 0.9's ``ImageMaskInput``).

    ``mask`` (``(height, width)`` of segment ids) or ``mask_list`` (one boolean ``(h, w)`` mask
    per feature, may overlap) define the segments; the whole image is one feature if neither is
    given. An absent segment is painted ``baseline`` (RGB). ``processor_fn`` turns the (painted)
    PIL image into the model input (identity by default).
    """

    def __init__(self, image: Any, mask: Tensor | None = None,
                 mask_list: list[Tensor] | None = None,
                 baseline: tuple[int, int, int] = (255, 255, 255),
                 processor_fn: Callable[[Any], Any] = lambda x: x) -> None:
        self.image = image
        self.baseline = baseline
        self.processor_fn = processor_fn
        shape = (image.size[1], image.size[0])                      # (height, width)
        if mask_list is not None:
            for i, m in enumerate(mask_list):
                if tuple(m.shape) != shape:
                    raise AttributionInputError(
                        f"mask_list[{i}] has shape {tuple(m.shape)}, the image is {shape}")
            mask_ids = list(range(len(mask_list)))
            mask = torch.empty(0)
        else:
            if mask is None:
                mask = torch.zeros(shape, dtype=torch.int32)
            elif tuple(mask.shape) != shape:
                raise AttributionInputError(
                    f"mask has shape {tuple(mask.shape)}, the image is {shape}")
            mask_ids = torch.unique(mask).tolist()
            mask_list = []
        self.mask = mask
        self.mask_list = mask_list
        self.n_itp_features = len(mask_ids)
        self.mask_id_to_idx = {int(mid): i for i, mid in enumerate(mask_ids)}
        self.values = [f"image_feature_{mid}" for mid in mask_ids]
        self.original_model_inputs = processor_fn(image)

    def to_tensor(self) -> Tensor:
        return torch.ones(1, self.n_itp_features)                  # (1, n_itp)

    def get_mask_list(self) -> list[Tensor]:
        """One boolean ``(h, w)`` mask per feature."""
        return self.mask_list or [self.mask == mid for mid in self.mask_id_to_idx]

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Any:
        if perturbed_tensor is None:
            return self.original_model_inputs
        import numpy as np
        import PIL.Image

        pixels = np.array(self.image)                               # (h, w, 3)
        for i, segment in enumerate(self.get_mask_list()):
            if perturbed_tensor[0][i] == 0:
                pixels[segment.bool().numpy()] = self.baseline
        return self.processor_fn(PIL.Image.fromarray(pixels.astype("uint8")))

    def format_pixel_attr(self, itp_attr: Tensor) -> Tensor:
        """``(*out, n_itp)`` -> ``(*out, h, w)``; overlapping segments add up."""
        out = torch.zeros(*itp_attr.shape[:-1], self.image.size[1], self.image.size[0],
                          device=itp_attr.device)
        for i, segment in enumerate(self.get_mask_list()):
            out = out + itp_attr[..., i, None, None] * segment.bool().to(itp_attr.device)
        return out
