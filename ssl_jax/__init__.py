"""ssl_jax: self-supervised pretraining in JAX/Flax.

The pure parts (`ssl_jax.losses`, `ssl_jax.masking`) import only jax and numpy and can be used alone.
"""

__version__ = "0.1.0"
