"""The image encoder of a joint-embedding method, from `config.model`: a ViT or a ResNet giving one vector per image.

`create(arch="vit", variant="S/16", pool="cls", ...)` or `create(arch="resnet", depth=50, ...)`; the module maps
normalised images `[B, H, W, 3]` to float32 features `[B, D]` and exposes `D` as `num_features`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.models import resnet
from ssl_jax.models import vit


class ViTEncoder(nn.Module):
  """A ViT whose output is the [CLS] token after the final LayerNorm ("cls") or the mean patch token ("gap")."""
  vit: dict
  pool: str = "cls"

  @property
  def num_features(self) -> int:
    return self.vit["width"]

  @nn.compact
  def __call__(self, x, train: bool = False):
    tokens = vit.ViT(**self.vit, name="vit")(x, train=train)
    feats = tokens[:, 0] if self.pool == "cls" else jnp.mean(tokens[:, 1:], axis=1)
    return feats.astype(jnp.float32)


def create(*, arch: str = "vit", pool: str = "cls", **kw: Any) -> nn.Module:
  """The encoder `arch` ("vit": keywords of `vit.vit_kwargs`; "resnet": fields of `resnet.ResNet`)."""
  if arch == "vit":
    if pool not in ("cls", "gap"):
      raise ValueError(f"model.pool must be 'cls' or 'gap', got {pool!r}.")
    return ViTEncoder(vit.vit_kwargs(**kw), pool)
  if arch == "resnet":
    kw = dict(kw)
    if "dtype" in kw:
      kw["dtype"] = jnp.dtype(kw["dtype"])
    if kw.get("stages") is not None:
      kw["stages"] = tuple(kw["stages"])
    return resnet.ResNet(**kw)
  raise ValueError(f"unknown model.arch {arch!r}; use 'vit' or 'resnet'.")
