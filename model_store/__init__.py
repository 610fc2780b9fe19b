"""Recipes that build the bundled models and their TorchServe archives (``make models``).

Each recipe module (``digits``, ``breast_cancer``, ``recommender``, ``resnet18``, ``tinylm``)
defines ``build() -> Built``: it trains (or, for resnet18, seeds) a model on data that ships
inside a package or is generated with fixed seeds, deterministically and with nothing
downloaded.
``model_store.archive`` writes the work directory (spec.yaml, weights, model.py, baseline data,
metrics) and packs the ``.mar``. Run ``python -m model_store --help``.
"""

RECIPES = ("digits", "breast_cancer", "recommender", "resnet18", "tinylm")
