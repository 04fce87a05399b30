"""One place per fact: every default of the attack's settings is written where its dataclass is, nowhere else.

The check reads the package's source (it runs nothing): a function parameter, a dataclass field or a click option
named like a field of :class:`~atgan_plugin.attack.config.TransferConfig` or
:class:`~atgan_plugin.attack.attack_options.AttackOptions` must not spell its default as a literal outside
``attack/config.py`` and ``attack/attack_options.py``; it takes it from there.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from atgan_plugin.attack.attack_options import AttackOptions
from atgan_plugin.attack.config import TransferConfig

ROOT = Path(__file__).resolve().parents[1]
HOMES = {ROOT / "atgan_plugin" / "attack" / "config.py", ROOT / "atgan_plugin" / "attack" / "attack_options.py"}
FIELDS = {f.name for f in fields(TransferConfig)} | {f.name for f in fields(AttackOptions)}
# Fields that other settings objects of the package hold with meanings of their own (a GAN trainer's steps,
# a classifier's batch size and lr, a defence's seed): their defaults are not the attack's.
OTHER_MEANINGS = {"steps", "lr", "batch_size", "seed", "precision", "warmup", "image_size"}
CHECKED = FIELDS - OTHER_MEANINGS


def _sources() -> list[Path]:
    files = [*(ROOT / "atgan_plugin").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]
    return sorted(path for path in files if path not in HOMES)


def _literal(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is not None and not isinstance(node.value, bool)


def duplicated_defaults(tree: ast.AST) -> list[str]:
    """``name = literal`` defaults of the checked fields in ``tree``: parameters, dataclass fields, click options."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            found += [f"parameter {a.arg}" for a, d in pairs if a.arg in CHECKED and _literal(d)]
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if item.target.id in CHECKED and _literal(item.value):
                        found.append(f"field {node.name}.{item.target.id}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("--"):
                name = first.value[2:].replace("-", "_")
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
                if name in CHECKED and _literal(default):
                    found.append(f"option --{first.value[2:]}")
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_default_of_the_attack_is_written_twice(path: Path) -> None:
    assert duplicated_defaults(ast.parse(path.read_text())) == []


def test_the_check_finds_what_it_looks_for() -> None:
    source = """
def f(search_steps: int = 8, *, rho_l0=200): ...
class C:
    joint_batch_size: int = 16
click.option("--pool", default=4096)
click.option("--pool", default=POOL)
"""
    assert duplicated_defaults(ast.parse(source)) == [
        "parameter search_steps",
        "parameter rho_l0",
        "field C.joint_batch_size",
        "option --pool",
    ]
