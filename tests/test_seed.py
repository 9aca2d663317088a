"""The seed's usage example runs unchanged with ``from lstm_xp import LSTM``.

The example is read from ``../shared/seed/`` (the project's starting point), not copied here:
its class definition is dropped, ``from lstm_xp import LSTM`` is put in its place, and what it
prints is compared with what the original prints.
"""

from __future__ import annotations

import ast
import contextlib
import io

from seedcode import seed_code


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<seed example>", "exec"), {"__name__": "__seed__"})
    return out.getvalue()


def _with_library(code: str) -> str:
    tree = ast.parse(code)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LSTM"]
    assert len(classes) == 1, "the seed defines class LSTM once"
    tree.body = [n for n in tree.body if n is not classes[0]]
    tree.body.insert(0, ast.parse("from lstm_xp import LSTM").body[0])
    return ast.unparse(tree)


def test_seed_example_runs_unchanged():
    code = seed_code()
    original = _run(code)
    ours = _run(_with_library(code))
    # The example prints shapes only, so the two outputs must match line for line.
    assert ours == original
    assert "(5, 1)" in ours and "(4, 5)" in ours


def test_seed_example_uses_our_class():
    code = _with_library(seed_code())
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<seed example>", "exec"), namespace)
    assert type(namespace["lstm"]).__module__ == "lstm_xp.lstm"
