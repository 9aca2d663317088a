"""lstm-xp against ONNX Runtime, call by call in one process: ratios a drifting host cannot bias.

Usage: ``python benchmarks/paired_ort.py [--seconds S] [--out FILE] [B,T,I,H ...]``.

On the 2-vCPU cloud guest of ``RESULTS.md`` the speed of a call changes by up to 1.7x within
seconds (both vCPUs together: the host's other guests), so two contenders timed a minute
apart, as ``lstm-xp bench`` times them (each in its own process, one after the other), can
be compared at different speeds. Here both run in one process and take turns call by call
(each sample at least ``MIN_SAMPLE_S`` of back-to-back calls), for ``--seconds`` a shape;
each pair of neighbouring samples gives a ratio, and the table reports the median ratio over
all pairs, and over the third of the pairs where lstm-xp was fastest (the host's quieter
stretches).

ONNX Runtime runs with ``allow_spinning`` off, so that its idle threads sleep rather than
take the cores from lstm-xp's next call. That costs it something (alternating processes,
1 s windows of each): nothing at (8, 100, 64, 128) (1.21-1.36 against 1.26-1.63 ms with
spinning), up to 5 % at (64, 50, 256, 512), 6-25 % at (16, 100, 128, 256) (8.99-12.03 against
8.47-9.59 ms), so from B = 16 on the ratios may favour lstm-xp by that much; at B = 1,
where ONNX Runtime runs a parallel product at every step, 1.3x-2x (0.85-1.12 against
0.46-0.82 ms at (1, 100, 64, 128)), so B = 1 is left to ``lstm-xp bench``.

lstm-xp's pool threads, on the other hand, linger for about 1.5 ms after a split call
(``lstm_xp.kernels._pool``: they look for the next call's part, yielding the core at each
look), so ONNX Runtime's next call may start beside a thread of lstm-xp's that is still
looking; ``lstm-xp bench``, each contender in its own process, has neither effect.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lstm_xp.bench import contenders
from lstm_xp.bench.runner import input_for, machine_info

#: Shortest sample: calls under this are repeated back to back within one sample.
MIN_SAMPLE_S = 5e-4
DEFAULT_SHAPES = ["2,100,32,64", "3,100,64,128", "4,100,128,256", "5,50,32,64", "8,100,64,128",
                  "8,100,128,256", "16,100,128,256", "16,200,64,128", "32,100,128,256",
                  "64,50,256,512"]


Shape = tuple[int, int, int, int]


def pair(shape: Shape, seconds: float) -> dict[str, list[float]]:
    """Both contenders on ``shape``, in turns for ``seconds``: their sample times (s)."""
    x = input_for(shape, "float32")
    runs = {"lstm-xp": contenders.lstm_xp("numpy").prepare(shape, "float32", x),
            "onnxruntime": contenders.onnxruntime_lstm(spinning=False).prepare(
                shape, "float32", x)}
    calls = {}
    for name, run in runs.items():
        run()
        t0 = time.perf_counter()
        run()
        calls[name] = max(1, int(MIN_SAMPLE_S / (time.perf_counter() - t0)))
    times: dict[str, list[float]] = {name: [] for name in runs}
    end, turn = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        order = list(runs) if turn % 2 == 0 else list(runs)[::-1]
        turn += 1
        for name in order:
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                runs[name]()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return times


def summary(shape: Shape, times: dict[str, list[float]]) -> str:
    """One line: medians, the median ratio ONNX Runtime / lstm-xp (above 1: lstm-xp faster)
    over all pairs and over lstm-xp's fastest third, and the ratios' interquartile range."""
    ours, ort = np.array(times["lstm-xp"]), np.array(times["onnxruntime"])
    ratio = ort / ours
    quiet = ours <= np.percentile(ours, 100 / 3)
    q1, q3 = np.percentile(ratio, [25, 75])
    return (f"{shape!s:22s} pairs {len(ours):6d}  lstm-xp "
            f"{1e3 * np.median(ours):8.3f} ms  ORT {1e3 * np.median(ort):8.3f} ms  "
            f"ORT/lstm-xp {np.median(ratio):5.2f} (fastest third {np.median(ratio[quiet]):5.2f}, "
            f"IQR {q1:.2f}-{q3:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", default=DEFAULT_SHAPES, metavar="B,T,I,H")
    parser.add_argument("--seconds", type=float, default=20.0, help="turns a shape (20)")
    parser.add_argument("--out", help="write every sample (us) and the machine as JSON here")
    args = parser.parse_args()
    samples = []
    for text in args.shapes:
        b, t, i, h = (int(v) for v in text.split(","))
        times = pair((b, t, i, h), args.seconds)
        print(summary((b, t, i, h), times), flush=True)
        samples.append({"shape": [b, t, i, h],
                        "times_us": {name: [round(1e6 * s, 1) for s in values]
                                     for name, values in times.items()}})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine_info(), "seconds": args.seconds,
                       "results": samples}, f)


if __name__ == "__main__":
    main()
