"""Executes notebooks/losses_and_masks.ipynb top to bottom (code cells in one namespace, figures off-screen)."""

import json

import matplotlib

from conftest import ROOT

matplotlib.use("Agg")


def test_losses_and_masks_notebook_runs(capsys):
  nb = json.loads((ROOT / "notebooks" / "losses_and_masks.ipynb").read_text())
  namespace = {"__name__": "__main__"}
  cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
  assert len(cells) >= 5
  for i, cell in enumerate(cells):
    exec(compile("".join(cell["source"]), f"notebook cell {i}", "exec"), namespace)
  out = capsys.readouterr().out
  # The collapse table: BYOL is blind to collapse (0), the contrastive losses are not.
  rows = {line[:20].strip(): [float(v) for v in line[20:].split()] for line in out.splitlines()
          if line[:20].strip() in ("NT-Xent (t=0.1)", "BYOL", "VICReg")}
  healthy, collapsed = 0, 1
  assert rows["BYOL"][collapsed] < 1e-5
  assert rows["NT-Xent (t=0.1)"][collapsed] > rows["NT-Xent (t=0.1)"][healthy]
  assert rows["VICReg"][collapsed] > rows["VICReg"][healthy]
