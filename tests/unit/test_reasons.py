"""postprocess.reasons: a reason cites a feature present in the input, above the baseline the
attribution was measured from, with a positive attribution; unsigned methods give none."""

from __future__ import annotations

import numpy as np
import pytest

from service.runtime import postprocess
from service.runtime.spec import parse_spec

SPEC = parse_spec({
    "name": "r", "version": "1", "model": {"file": "m.py", "class": "M"},
    "input": {"kind": "tabular", "shape": [4],
              "feature_names": ["genre:Action", "genre:Drama", "watched:Heat", "watched:Up"]},
    "output": {"kind": "classification", "class_names": ["a", "b"]},
    "explain": {"algorithms": ["IntegratedGradients"],
                "reasons": [{"prefix": "genre:", "template": "like {name}"},
                            {"prefix": "watched:", "template": "watched {name}"}]},
})


def test_a_reason_needs_presence_a_value_above_the_baseline_and_a_positive_attribution():
    x = np.array([0.014, 0.9, 1.0, 0.0])          # Action barely liked; Up not watched
    mean = np.array([0.25, 0.25, 0.1, 0.1])       # the training mean
    attr = np.array([0.8, 0.5, 0.3, 0.9])         # Action and Up "help" by being absent
    assert postprocess.reasons(attr, x, x, mean, SPEC, 10) == ["like Drama", "watched Heat"]
    # Against zeros, Action is present and above its baseline: a true reason.
    assert postprocess.reasons(attr, x, x, None, SPEC, 10) == ["like Action", "like Drama",
                                                               "watched Heat"]
    # A negative attribution is never a reason, and the limit counts reasons.
    assert postprocess.reasons(-attr, x, x, None, SPEC, 10) == []
    assert postprocess.reasons(attr, x, x, None, SPEC, 1) == ["like Action"]


@pytest.mark.parametrize(("algorithm", "params", "signed"), [
    ("IntegratedGradients", {"n_steps": 8}, True),
    ("Saliency", {"abs": True}, False),
    ("Saliency", {"abs": False}, False),
    ("NoiseTunnel", {"base": "IntegratedGradients", "nt_type": "smoothgrad"}, True),
    ("NoiseTunnel", {"base": "IntegratedGradients", "nt_type": "smoothgrad_sq"}, False),
    ("NoiseTunnel", {"base": "DeepLift", "nt_type": "vargrad"}, False),
    ("NoiseTunnel", {"base": "Saliency", "nt_type": "smoothgrad"}, False),
    ("KernelShap", {}, True),
])
def test_signed_methods(algorithm, params, signed):
    assert postprocess.is_signed(algorithm, params) is signed
