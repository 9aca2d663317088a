"""Read the seed's code from ``../shared/seed/`` (the project's starting point)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"


def seed_code() -> str:
    """The seed's Python block; skips the test when the seed is not beside the checkout."""
    files = sorted(SEED_DIR.glob("*.txt")) if SEED_DIR.is_dir() else []
    if not files:
        pytest.skip(f"the seed is not at {SEED_DIR} (it lies beside the checkout in CI)")
    text = files[0].read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"no Python block in {files[0]}"
    return blocks[0]


def seed_class():
    """The seed's own ``LSTM`` class, defined by running its code up to the usage example."""
    import ast

    tree = ast.parse(seed_code())
    tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.ClassDef))]
    namespace: dict = {}
    exec(compile(tree, "<seed>", "exec"), namespace)
    return namespace["LSTM"]
