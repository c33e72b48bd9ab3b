"""docs/design.md's worked example is the code as it is: every line of its excerpts is in the file it names, in
order (`...` stands for lines left out)."""

import re

from conftest import ROOT


def _excerpts() -> list[tuple[str, list[str]]]:
  """(file, lines) of each code block of the worked example: the file is the one that opens the paragraph before it."""
  text = (ROOT / "docs" / "design.md").read_text()
  section = text[text.index("## Worked example"):]
  found, path, block, previous = [], None, None, ""
  for line in section.splitlines()[1:]:
    if line.startswith("## "):
      break
    if block is not None:
      if line.startswith("```"):
        found.append((path, block))
        block = None
      else:
        block.append(line)
    elif line.startswith("```python"):
      block = []
    elif not previous and (m := re.match(r"`([\w/.]+\.py)`", line)):     # a paragraph's first line
      path = m.group(1)
    previous = line
  return found


def test_worked_example_excerpts_are_in_their_files():
  excerpts = _excerpts()
  assert [f for f, _ in excerpts] == ["ssl_jax/methods/simclr.py", "ssl_jax/methods/__init__.py",
                                      "configs/tiny/simclr.py"]
  for path, lines in excerpts:
    source = (ROOT / path).read_text().splitlines()
    at = 0
    for line in lines:
      if line.strip() == "...":
        continue
      assert line in source[at:], f"{path}: {line!r} is not there (after line {at})"
      at = source.index(line, at) + 1
