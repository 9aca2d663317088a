"""``lstm-xp bench``: forward throughput of lstm-xp on every backend and device that works here,
beside its peers (``torch.nn.LSTM``, ONNX Runtime's LSTM operator, the seed's algorithm) and the
GEMM floor, measured in one run."""

from .runner import DEFAULT_GRID, QUICK_GRID, BenchConfig, run_bench

__all__ = ["DEFAULT_GRID", "QUICK_GRID", "BenchConfig", "run_bench"]
