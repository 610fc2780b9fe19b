"""service.runtime.loader: the model from an archive's model.py and weights."""

from __future__ import annotations

import torch

from service.runtime import load_spec
from service.runtime.loader import load_model
from tests.serving_fixture import tiny_image


def test_load_model_maps_the_weights_and_keeps_the_modules_dtypes(tmp_path) -> None:
    """load_model takes the parameters from the mmap'ed file (no copy) with the values saved;
    a file of another dtype (or the legacy format, which cannot be mapped) is copied into the
    module's own dtype as before."""
    d = tiny_image(tmp_path / "m")
    spec = load_spec(d / "spec.yaml")
    saved = torch.load(d / "weights.pt", weights_only=True)
    model = load_model(spec, d)
    for name, p in model.state_dict().items():
        assert torch.equal(p, saved[name]) and p.dtype == saved[name].dtype
    assert all(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 1, 8, 8)
    model.zero_grad()
    model(x).sum().backward()   # gradients flow through the mapped parameters
    assert all(p.grad is not None for p in model.parameters())
    torch.save({k: v.double() for k, v in saved.items()}, d / "weights.pt",
               _use_new_zipfile_serialization=False)
    legacy = load_model(spec, d)
    for name, p in legacy.state_dict().items():
        assert p.dtype == torch.float32 and torch.allclose(p, saved[name])
