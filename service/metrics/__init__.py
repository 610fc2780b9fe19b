"""Explanation quality metrics with Captum's signatures: ``infidelity`` and
``sensitivity_max``."""

from ._chunks import perturb_chunks
from .infidelity import infidelity, infidelity_perturb_func_decorator
from .sensitivity import default_perturb_func, sensitivity_max

__all__ = ["infidelity", "infidelity_perturb_func_decorator", "sensitivity_max",
           "default_perturb_func", "perturb_chunks"]
