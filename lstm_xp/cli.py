"""The ``lstm-xp`` command line: ``lstm-xp bench`` and ``lstm-xp backends``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError(
            f"a shape is four positive integers B,T,I,H (e.g. 16,100,128,256); got {text!r}")
    return parts


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-xp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench", help="time the forward pass across backends, devices and peers",
        description="Float forward pass over whole sequences on every backend and device that "
                    "works here, beside torch.nn.LSTM, ONNX Runtime and the seed, with the "
                    "GEMM floor. Prints a table; with --out writes bench.json, bench.md and "
                    "bench.png.")
    bench.add_argument("--quick", action="store_true",
                       help="a small grid (under a minute on a laptop CPU)")
    bench.add_argument("--shapes", type=_shape, nargs="+", metavar="B,T,I,H",
                       help="shapes to run instead of the default grid")
    bench.add_argument("--backends", type=_csv, default=("numpy", "cupy", "torch", "jax"),
                       help="lstm-xp backends (comma-separated; unusable ones are skipped "
                            "with the reason). Default: numpy,cupy,torch,jax")
    bench.add_argument("--peers", type=_csv, default=("torch", "onnxruntime", "seed"),
                       help="peers to time beside lstm-xp. Default: torch,onnxruntime,seed")
    bench.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16"))
    bench.add_argument("--repeats", type=int, default=None,
                       help="timed runs per cell (median reported). Default 7, --quick 3")
    bench.add_argument("--rounds", type=int, default=None,
                       help="the contenders take turns this many times at each shape, "
                            "each turn a share of the repeats, so that a machine whose speed "
                            "drifts slows them all alike. Default: one a repeat (a sample a "
                            "turn), --quick 1")
    bench.add_argument("--max-seconds", type=float, default=None,
                       help="stop repeating a cell after this many seconds (at least 3 runs)")
    bench.add_argument("--pure", action="store_true",
                       help="also time the pure Array-API path beside each fast kernel")
    bench.add_argument("--lengths", type=_csv, default=(),
                       help="also time lstm-xp with per-sequence lengths, and torch.nn.LSTM "
                            "through packed sequences: one-short (all full but one, the worst "
                            "case for overhead), random (T/2..T)")
    bench.add_argument("--train", action="store_true",
                       help="time a training step (forward_train + backward, gradient of the "
                            "sum of outputs) beside torch.nn.LSTM with autograd")
    bench.add_argument("--out", type=Path, default=None,
                       help="folder for bench.json, bench.md and bench.png")
    sub.add_parser("backends", help="list the backends and their kernels, and whether each "
                                    "works here (and why not)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "backends":
        _print_backends()
        return 0

    from .bench import DEFAULT_GRID, QUICK_GRID, BenchConfig, run_bench
    from .bench.report import text_table, write_all

    shapes = args.shapes or (QUICK_GRID if args.quick else DEFAULT_GRID)
    repeats = args.repeats or (3 if args.quick else 7)
    config = BenchConfig(
        shapes=tuple(shapes), backends=args.backends, peers=args.peers, dtype=args.dtype,
        repeats=repeats, rounds=args.rounds or (1 if args.quick else repeats),
        max_seconds=args.max_seconds or (1.0 if args.quick else 6.0), pure=args.pure,
        lengths=args.lengths, mode="train" if args.train else "forward")
    report = run_bench(config)
    print(text_table(report))
    if args.out is not None:
        paths = write_all(report, args.out)
        for note in report.get("notes", []):
            print(note, file=sys.stderr)
        print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _print_backends() -> None:
    """Each backend, usable or not and why; under it every kernel, the one ``kernel="auto"``
    picks marked ``default``, the others with the reason they do not run there."""
    from . import available_backends
    from .kernels import kernel_report

    for name, status in available_backends().items():
        print(f"{name:18s} {'usable' if status.usable else 'unusable':9s} {status.reason}")
        default_taken = False
        for kernel, usable, why in kernel_report(name):
            if not status.usable:
                mark = "no" if not usable else "-"  # would run, were the backend usable
            elif usable and not default_taken:
                mark, default_taken = "default", True
            else:
                mark = "yes" if usable else "no"
            print(f"  kernel {kernel:14s} {mark:8s} {why}")
