"""Explanation microservice for PyTorch models: a Captum-compatible attribution engine
(`service.attribution`) served next to the model in TorchServe, over REST and gRPC."""

__version__ = "0.1.0"
