"""Train an LSTM on the adding problem (Hochreiter & Schmidhuber, 1997).

Each input step is a pair (value uniform in [-1, 1], marker). A sequence's length is drawn from
T..T+T/10. Exactly two pairs are marked 1.0: one among the first ten, one among the first
T/2-1 still unmarked; the first and last pairs otherwise carry marker -1, the rest 0. The target
is 0.5 + (X1 + X2)/4 for the two marked values. A sequence counts as solved when the absolute
error is below 0.04 (the paper's criterion). A constant predictor has MSE 1/24 (about 0.042).

    python examples/adding_problem.py --T 100 --steps 1000

Variable lengths are fed as one padded batch with ``lengths``, so the readout sees each
sequence's state at its own last step (``h_n``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from lstm_xp import LSTM, Adam, Linear, clip_grad_norm, mse_loss
from lstm_xp._backend import to_numpy


def adding_batch(rng: np.random.Generator, batch: int, T: int):
    """A padded batch: inputs (B, T_max, 2) float32, lengths (B,), targets (B,) float32."""
    lengths = rng.integers(T, T + T // 10 + 1, size=batch)
    t_max = int(lengths.max())
    steps = np.arange(t_max)[None, :]
    valid = steps < lengths[:, None]
    values = np.where(valid, rng.uniform(-1.0, 1.0, (batch, t_max)), 0.0)
    # first: among the first ten (fewer for very short sequences); second: uniform over
    # [0, T/2 - 1) without `first`
    span = T // 2 - 1
    if span < 3:
        raise ValueError(f"T must be at least 8; got {T}")
    first = rng.integers(0, min(10, span - 1), size=batch)
    second = rng.integers(0, span - 1, size=batch)
    second = second + (second >= first)
    markers = np.zeros((batch, t_max))
    rows = np.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    markers[:, 0] = np.where(markers[:, 0] == 1.0, 1.0, -1.0)
    markers[rows, lengths - 1] = -1.0  # the last pair is never marked (second < T/2)
    targets = 0.5 + (values[rows, first] + values[rows, second]) / 4.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    return x, lengths, targets.astype(np.float32)


@dataclass
class Result:
    steps: int
    seconds: float
    test_mse: float
    solved: float


def predict(model: LSTM, readout: Linear, x, lengths):
    _, (h_n, _) = model(x, lengths=lengths)
    return readout(h_n[-1, ...])[:, 0]


def evaluate(model: LSTM, readout: Linear, T: int, rng: np.random.Generator,
             count: int = 2560, batch: int = 512) -> tuple[float, float]:
    """(MSE, fraction solved) on ``count`` fresh sequences."""
    errors = []
    for start in range(0, count, batch):
        x, lengths, y = adding_batch(rng, min(batch, count - start), T)
        errors.append(to_numpy(predict(model, readout, x, lengths)) - y)
    err = np.concatenate(errors)
    return float(np.mean(err**2)), float(np.mean(np.abs(err) < 0.04))


def train(T: int = 100, steps: int = 1000, batch: int = 64, hidden: int = 64,
          lr: float = 1e-2, clip: float = 1.0, seed: int = 0, backend: str = "numpy",
          device=None, progress: bool = True, eval_every: int = 0) -> Result:
    """Train on fresh batches for ``steps`` steps; return the test figures at the end."""
    rng = np.random.default_rng(seed)
    model = LSTM(2, hidden, batch_first=True, bias_init="chrono", chrono_max=T * 1.1,
                 backend=backend, device=device, seed=seed)
    readout = Linear(hidden, 1, backend=backend, device=device, seed=seed + 1)
    opt = Adam([model, readout], lr=lr)
    xp = model.xp
    start = time.perf_counter()
    loss_avg = None
    for step in range(1, steps + 1):
        x, lengths, y = adding_batch(rng, batch, T)
        out, (h_n, _), tape = model.forward_train(x, lengths=lengths)
        pred, r_tape = readout.forward_train(h_n[-1, ...])
        loss, d_pred = mse_loss(pred[:, 0], y)
        d_last, g_readout = readout.backward(r_tape, xp.expand_dims(d_pred, axis=1))
        dh_n = xp.concat([xp.zeros((h_n.shape[0] - 1, *h_n.shape[1:]), dtype=model.dtype,
                                   device=model.device), xp.expand_dims(d_last, axis=0)])
        _, _, g_model = model.backward(tape, xp.zeros_like(out), (dh_n, None))
        (g_model, g_readout), _ = clip_grad_norm([g_model, g_readout], clip)
        opt.step([g_model, g_readout])
        value = float(loss)
        loss_avg = value if loss_avg is None else 0.95 * loss_avg + 0.05 * value
        if progress and (step % 10 == 0 or step == steps):
            done = int(30 * step / steps)
            print(f"\r[{'#' * done}{'.' * (30 - done)}] step {step}/{steps} "
                  f"loss {loss_avg:.4f} {time.perf_counter() - start:.0f}s", end="",
                  file=sys.stderr, flush=True)
        if eval_every and step % eval_every == 0:
            mse, solved = evaluate(model, readout, T, np.random.default_rng(10_000 + step))
            if progress:
                print(f"\n  step {step}: test MSE {mse:.5f}, solved {solved:.1%}",
                      file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    if progress:
        print(file=sys.stderr)
    mse, solved = evaluate(model, readout, T, np.random.default_rng(seed + 12345))
    return Result(steps, seconds, mse, solved)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, default=100, help="minimum sequence length")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--eval-every", type=int, default=0)
    args = parser.parse_args(argv)
    result = train(args.T, args.steps, args.batch, args.hidden, args.lr, seed=args.seed,
                   backend=args.backend, eval_every=args.eval_every)
    print(f"T={args.T}: {result.steps} steps in {result.seconds:.1f} s; test MSE "
          f"{result.test_mse:.5f} (constant predictor: {1 / 24:.5f}); solved "
          f"{result.solved:.1%} of 2560 fresh sequences (|error| < 0.04)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
