"""Neuron attribution: how much each input feature contributes to one neuron of a layer."""
