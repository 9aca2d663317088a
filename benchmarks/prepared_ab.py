"""A model's prepared call against the other way, call kind by call kind, in one process.

Usage: ``python benchmarks/prepared_ab.py [--seconds S] [--block S] B,T,I,H[,L[,D]] ...``

For each shape (``L`` layers, ``D`` directions: 1 and 1 by default) and each kind of call
(from zeros; from a state given, not zero; with lengths, one sequence a step short), the
compiled kernel's plain call (:func:`lstm_xp.kernels.numba_scan.plain_forward`) runs two
ways on the same model and input: prepared once for the shape (the model's grouped layers,
which keep a memo of prepared calls) and the other way (the same layers in a plain list,
which has none: plans, operands and checks at every call). The two take turns in blocks
of ``--block`` seconds of back-to-back calls (``plan_ab.py``'s turns), the order flipped
each round, for ``--seconds`` a kind; the table gives each way's median time and the median
over rounds of prepared / other (below 1: the prepared call is faster). Both give the same
bits (tests); this times only what preparing saves.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from plan_ab import _turn

from lstm_xp import LSTM


def compare(spec: tuple[int, ...], seconds: float, block: float) -> list[dict[str, Any]]:
    """Prepared against other, for each kind of call at ``spec`` (B, T, I, H, L, D)."""
    batch, steps, size_in, hidden, layers, ways = spec
    model = LSTM(size_in, hidden, num_layers=layers, bidirectional=ways == 2, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, size_in)).astype(np.float32)
    state = tuple(0.5 * rng.standard_normal((layers * ways, batch, hidden)).astype(np.float32)
                  for _ in range(2))
    short = [steps] * (batch - 1) + [steps - 1] if steps > 1 else None
    kinds: dict[str, tuple[Any, Any]] = {"zeros": (None, None), "state": (state, None)}
    if short is not None:
        kinds["lengths"] = (None, short)
    prepared, other = model._layers(), list(model._layers())
    rows = []
    for kind, (given, lengths) in kinds.items():
        runs = {"prepared": lambda g=given, n=lengths: model._plain(x, prepared, g, n),
                "other": lambda g=given, n=lengths: model._plain(x, other, g, n)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        end, turn = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            for name in (list(runs) if turn % 2 == 0 else list(runs)[::-1]):
                times[name].append(_turn(runs[name], block))
            turn += 1
        ratio = np.array(times["prepared"]) / np.array(times["other"])
        rows.append({"kind": kind, "rounds": turn,
                     "us": {n: float(np.median(t)) * 1e6 for n, t in times.items()},
                     "ratio": float(np.median(ratio)), "range": (float(ratio.min()),
                                                                 float(ratio.max()))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shapes", nargs="+")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--block", type=float, default=0.15)
    args = parser.parse_args()
    print("| (B, T, I, H, L, D) | call | prepared us | other us | prepared / other (range) |")
    print("|---|---|---|---|---|")
    for text in args.shapes:
        values = [int(v) for v in text.split(",")]
        if len(values) not in (4, 5, 6) or (len(values) == 6 and values[5] not in (1, 2)):
            parser.error(f"a shape is B,T,I,H[,L[,D]] with D 1 or 2; got {text!r}")
        spec = tuple(values + [1] * (6 - len(values)))
        for row in compare(spec, args.seconds, args.block):
            low, high = row["range"]
            print(f"| {spec} | {row['kind']} | {row['us']['prepared']:.1f} | "
                  f"{row['us']['other']:.1f} | {row['ratio']:.3f} ({low:.2f}-{high:.2f}) |",
                  flush=True)


if __name__ == "__main__":
    main()
