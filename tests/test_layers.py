"""The import direction of docs/design.md, read from the source: lower layers never import higher ones."""

import ast
import pathlib

from conftest import ROOT

PACKAGE = ROOT / "ssl_jax"


def _name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
  base = ROOT / pathlib.Path(*name.split("."))
  return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imported(nodes) -> set[str]:
  """The ssl_jax modules the import statements among `nodes` name (`from a import b` is `a.b` when that is a
  module, else `a`)."""
  found = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("ssl_jax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_jax"):
      found |= {f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                for a in node.names}
  return found


TREES = {_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}
ANYWHERE = {m: _imported(ast.walk(t)) for m, t in TREES.items()}          # function-level imports included

# Module (or package) -> the ssl_jax modules it may import, besides itself.
PURE = ("ssl_jax.losses", "ssl_jax.masking", "ssl_jax.pretext", "ssl_jax.monitors")
RULES = {
    **{p: PURE for p in PURE},
    "ssl_jax.ops": ("ssl_jax.ops",),
    "ssl_jax.runtime": ("ssl_jax.runtime",),
    "ssl_jax.models": PURE + ("ssl_jax.models",),
    "ssl_jax.methods": PURE + ("ssl_jax.ops", "ssl_jax.models", "ssl_jax.methods"),
    "ssl_jax.evaluators": ("ssl_jax.evaluators", "ssl_jax.sharding", "ssl_jax.monitors"),
    "ssl_jax.data": ("ssl_jax.data", "ssl_jax.ops", "ssl_jax.runtime"),
    "ssl_jax.convert": ("ssl_jax.models",),
}


def _under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + ".")


def test_each_layer_imports_only_the_layers_below_it():
  wrong = []
  for module, imported in ANYWHERE.items():
    rule = next((RULES[p] for p in RULES if _under(module, p)), None)
    if rule is not None:
      wrong += [f"{module} imports {n}" for n in sorted(imported)
                if n != "ssl_jax" and not any(_under(n, a) for a in rule)]
  assert not wrong, wrong


def test_only_the_entry_points_import_the_trainer():
  assert sorted(m for m, imported in ANYWHERE.items() if "ssl_jax.train" in imported) == ["ssl_jax.dry_run"]


def test_imports_have_no_cycle():
  """Every import, module-level or inside a function: no module reaches itself (export.py and pretrained.py share
  the conversions of convert.py instead of importing each other)."""
  done, path = set(), []

  def visit(m):
    if m in path:
      raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m):] + [m])}")
    if m not in done and m in ANYWHERE:
      path.append(m)
      for n in sorted(ANYWHERE[m]):
        visit(n)
      path.pop()
      done.add(m)

  for m in sorted(ANYWHERE):
    visit(m)
