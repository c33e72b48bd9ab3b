"""Writes image-caption pairs as ArrayRecord shards, the random-access format the image-text pipeline reads fastest.

    python -m ssl_jax.data.prepare_pairs --input=/data/pairs --split=train --out=/data/pairs_ar
    python -m ssl_jax.data.prepare_pairs --input=emoji --split=test --out=data/emoji_pairs

`--input`: a folder of webdataset shards (`<input>/<split>/*.tar`, or for "train" `<input>/*.tar`: `{key}.jpg` +
`{key}.txt`, what img2dataset writes) or an embedded set with captions (`emoji`, `digits`). Every pair is checked as it
is copied: one whose image does not decode or whose caption is empty is left out and counted (`--bad_pairs=skip`, the
default) or stops the run naming its shard and key (`stop`). The image is stored as its original encoded bytes (the
embedded sets' as PNG), the caption as UTF-8, one record per pair (`sources.encode_pair`).

Writes `<out>/<split>/pairs-NNNNN-of-MMMMM.array_record` (`--shard_size` pairs each) and `<out>/<split>/meta.json`
(pairs written, pairs left out and why, the input, the shards). `config.data = config_lib.image_text_data(
"prepared_pairs", ...)` with `config.data.data_dir=<out>` reads them (`ssl_jax.data.sources.PreparedPairSource`).
Nothing in `<out>/<split>` is replaced unless `--overwrite` is given.
"""

import argparse
import io
import json
import os
import shutil
import sys
import time

import numpy as np

from ssl_jax.data import sources

EMBEDDED = ("emoji", "digits")


def _png(image: np.ndarray) -> bytes:
  from PIL import Image
  out = io.BytesIO()
  Image.fromarray(image).save(out, format="PNG")
  return out.getvalue()


def read_pairs(inputs: str, split: str, *, bad_pairs: str = "skip"):
  """`(pairs, counts)`: an iterator of `(image bytes, caption)` of `inputs` / `split` and a dict it fills with what
  was left out (`undecodable`, `empty_caption`)."""
  counts = dict(undecodable=0, empty_caption=0)
  if inputs in EMBEDDED:
    source = sources.make(inputs, split)

    def embedded():
      for i in range(len(source)):
        yield _png(source[i]["image"]), str(source.captions[i])
    return embedded(), counts
  source = sources.WebDatasetSource(sources.webdataset_shards(inputs, split), bad_pairs="stop")

  def webdataset():
    from PIL import Image
    for i, (shard, key, image, _) in enumerate(source.entries):
      caption = source.caption(i)
      data = source._bytes(shard, image)                   # pylint: disable=protected-access
      why = None if caption else "empty_caption"
      if why is None:
        try:
          with Image.open(io.BytesIO(data)) as img:
            img.convert("RGB")
        except (OSError, ValueError, SyntaxError):
          why = "undecodable"
      if why is not None:
        if bad_pairs == "stop":
          what = "an empty caption" if why == "empty_caption" else "an image that does not decode"
          raise sources.BadPairError(f"{source.shards[shard]}: key {key!r} has {what} (--bad_pairs=stop; 'skip' "
                                     "leaves such pairs out and counts them)")
        counts[why] += 1
        continue
      yield data, caption
  return webdataset(), counts


def prepare(inputs: str, split: str, out: str, *, shard_size: int = 10_000, bad_pairs: str = "skip",
            overwrite: bool = False, progress=None) -> dict:
  """Writes `out/<split>/` (module docstring); returns its `meta.json` as a dict."""
  from array_record.python import array_record_module
  if bad_pairs not in ("skip", "stop"):
    raise ValueError(f"--bad_pairs={bad_pairs!r}: use 'skip' or 'stop'.")
  if shard_size < 1:
    raise ValueError(f"--shard_size must be positive, got {shard_size}.")
  directory = os.path.join(out, split)
  if os.path.exists(directory) and os.listdir(directory) and not overwrite:
    raise FileExistsError(f"{directory} is not empty; choose another --out or pass --overwrite.")
  pairs, counts = read_pairs(inputs, split, bad_pairs=bad_pairs)
  partial = directory + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  start, written, names, writer = time.time(), 0, [], None
  for image, caption in pairs:
    if written % shard_size == 0:
      if writer is not None:
        writer.close()
      names.append(f"pairs-{len(names):05d}.array_record")
      writer = array_record_module.ArrayRecordWriter(os.path.join(partial, names[-1]), "group_size:1")
    writer.write(sources.encode_pair(image, caption))
    written += 1
    if progress is not None and written % 1000 == 0:
      progress(written)
  if writer is not None:
    writer.close()
  if not written:
    shutil.rmtree(partial)
    raise ValueError(f"--input={inputs!r} split {split!r} has no usable image-caption pair.")
  final = [f"pairs-{i:05d}-of-{len(names):05d}.array_record" for i in range(len(names))]
  for old, new in zip(names, final):
    os.replace(os.path.join(partial, old), os.path.join(partial, new))
  meta = dict(input=inputs, split=split, pairs=written, left_out=counts, shards=final, shard_size=shard_size,
              seconds=round(time.time() - start, 1))
  with open(os.path.join(partial, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  if os.path.exists(directory):
    shutil.rmtree(directory)
  os.replace(partial, directory)
  return meta


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ssl_jax.data.prepare_pairs", description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", required=True, help="a folder of webdataset shards, or 'emoji' / 'digits'")
  parser.add_argument("--split", default="train")
  parser.add_argument("--out", required=True)
  parser.add_argument("--shard_size", type=int, default=10_000)
  parser.add_argument("--bad_pairs", default="skip", choices=("skip", "stop"))
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  try:
    meta = prepare(args.input, args.split, args.out, shard_size=args.shard_size, bad_pairs=args.bad_pairs,
                   overwrite=args.overwrite, progress=lambda n: print(f"\r{n:,} pairs", end="", flush=True))
  except (ValueError, FileNotFoundError, FileExistsError, sources.BadPairError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  left = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in meta["left_out"].items())
  print(f"\rwrote {meta['pairs']:,} pairs in {len(meta['shards'])} shards to {os.path.join(args.out, args.split)} "
        f"({left} left out) in {meta['seconds']} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
