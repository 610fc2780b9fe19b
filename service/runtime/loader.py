"""Loading a model archive's nn.Module from its spec: the class in ``model.file``, constructed
with no arguments, with the ``model.weights`` state_dict, on the given device."""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import sys

import torch
from torch import nn

from .errors import ModelError
from .spec import ModelSpec


def load_model(spec: ModelSpec, model_dir: str | pathlib.Path,
               device: torch.device | str = "cpu") -> nn.Module:
    d = pathlib.Path(model_dir)
    path = d / spec.model_file
    if not path.is_file():
        raise ModelError("model.file", f"{path} does not exist")
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"_served_{spec.name}_{tag}"
    mspec = importlib.util.spec_from_file_location(module_name, path)
    if mspec is None or mspec.loader is None:
        raise ModelError("model.file", f"cannot import {path}")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[module_name] = module
    mspec.loader.exec_module(module)
    cls = getattr(module, spec.model_class, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ModelError("model.class", f"{spec.model_class!r} is not an nn.Module class in "
                         f"{spec.model_file}")
    model = cls()
    weights = d / spec.weights
    if weights.is_file():
        # mmap + assign: the parameters are the file's pages (copy-on-write), not a copy made
        # at every worker start (ResNet-18: 45 MB, 130 ms of a restart's CPU); a file in the
        # old, non-zip format cannot be mapped and is read as before.
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, nn.Module):  # a whole pickled module is not accepted
            raise ModelError("model.weights", "must hold a state_dict")
        current = model.state_dict()
        same_dtypes = all(k in current and current[k].dtype == v.dtype
                          for k, v in state.items() if isinstance(v, torch.Tensor))
        model.load_state_dict(state, assign=same_dtypes)  # else copied into the module's dtype
    return model.to(device).eval()
