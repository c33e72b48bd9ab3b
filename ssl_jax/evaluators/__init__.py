"""Downstream evaluation of frozen features: weighted kNN (DINO) and a linear probe, in JAX on global arrays."""

from ssl_jax.evaluators.knn import knn_accuracy
from ssl_jax.evaluators.linear import linear_probe_accuracy

__all__ = ["knn_accuracy", "linear_probe_accuracy"]
