"""Self-supervised objectives as pure `jax.numpy` functions.

Every function here computes its loss for the GLOBAL batch it is given (under `jit` the batch may be sharded over
devices and hosts; the result does not depend on how), has static shapes, and imports only jax and numpy.
"""

from ssl_jax.losses.reconstruction import mae_loss
from ssl_jax.losses.reconstruction import patch_normalize

__all__ = ["mae_loss", "patch_normalize"]
