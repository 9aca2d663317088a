"""The README's main job: ``lstm-xp bench --quick --out DIR`` on a machine with no GPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from lstm_xp import BACKENDS
from lstm_xp.bench.contenders import gemm_floor, lstm_xp, lstm_xp_train, seed, train_gemm_floor
from lstm_xp.bench.report import markdown
from lstm_xp.bench.runner import BenchConfig, lstm_flops, run_bench, time_runner
from lstm_xp.cli import main


def test_bench_quick_writes_table_json_markdown_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    code = main(["bench", "--shapes", "1,4,3,5", "2,4,3,5", "--backends", "numpy",
                 "--peers", "seed", "--repeats", "3", "--max-seconds", "0.5", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "lstm-xp numpy cpu" in printed and "x seed" in printed
    report = json.loads((out / "bench.json").read_text())
    names = {r["contender"] for r in report["results"]}
    assert {"lstm-xp numpy cpu", "GEMM floor numpy cpu",
            "seed (NumPy, per-gate, column vectors)"} <= names
    for r in report["results"]:
        assert len(r["times_s"]) >= 3 and all(t > 0 for t in r["times_s"])
        assert r["sequences_per_s"] == pytest.approx(r["shape"][0] / r["median_s"])
    assert "| lstm-xp numpy cpu |" in (out / "bench.md").read_text()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_rows_on_a_gpu_compare_with_torch_on_that_gpu():
    """'x torch' divides torch.nn.LSTM's time on the row's own device by the row's: a GPU row
    against torch on that GPU, not against torch on the CPU."""
    from lstm_xp.bench.report import text_table

    def row(name, kind, device, ms):
        return {"contender": name, "kind": kind, "device": device, "shape": [4, 10, 3, 5],
                "median_s": ms / 1e3, "sequences_per_s": 4e3 / ms, "gflops": 1.0,
                "peak_bytes": None, "skipped": None}

    gpu = "cuda:0 (Some GPU)"
    report = {"results": [row("lstm-xp cupy cuda:0 (Some GPU)", "lstm-xp", gpu, 4.0),
                          row("lstm-xp torch cuda:0", "lstm-xp", "cuda:0", 8.0),
                          row("lstm-xp numpy cpu", "lstm-xp", "cpu", 5.0),
                          row("torch.nn.LSTM cpu", "peer", "cpu", 10.0),
                          row("torch.nn.LSTM cuda:0 (Some GPU)", "peer", gpu, 2.0)]}
    lines = {line.split("  ")[0]: line.split() for line in text_table(report).splitlines()}
    assert lines["lstm-xp cupy cuda:0 (Some GPU)"][-1] == "0.50"  # 2 ms / 4 ms
    assert lines["lstm-xp torch cuda:0"][-1] == "0.25"
    assert lines["lstm-xp numpy cpu"][-1] == "2.00"  # 10 ms / 5 ms
    assert lines["torch.nn.LSTM cpu"][2:] == ["10.000", "400", "1.0"]  # none with itself


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "lstm_xp", "backends"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.splitlines()[0].startswith("numpy") and "usable" in out.stdout


def test_bad_shape_argument(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--shapes", "1,2,3"])
    assert "four positive integers" in capsys.readouterr().err


def test_unusable_backend_is_skipped_with_reason():
    report = run_bench(BenchConfig(shapes=[(1, 2, 2, 2)], backends=("numpy", "nonsense"),
                                   peers=(), repeats=3), progress=None)
    assert {r["contender"] for r in report["results"]} == {"lstm-xp numpy cpu",
                                                           "GEMM floor numpy cpu",
                                                           *_beside_numba("lstm-xp numpy cpu")}


def test_contenders_compute_what_they_claim(rng):
    """The seed baseline and lstm-xp produce hidden states of the right shape; the floor runs."""
    shape = (2, 3, 4, 5)
    x = rng.standard_normal((3, 2, 4)).astype("float32")
    assert lstm_xp("numpy").prepare(shape, "float32", x)().shape == (3, 2, 5)
    y = seed().prepare(shape, "float32", x)()
    assert y.shape == (3, 2, 5) and abs(y).max() <= 1
    assert gemm_floor().prepare(shape, "float32", x)().shape == (20, 2)  # (4H, B)
    assert lstm_flops((1, 1, 1, 1)) == 16


def test_time_runner_counts_calls():
    calls = []
    times = time_runner(lambda: calls.append(1), repeats=5, max_seconds=10, min_sample_s=0)
    assert len(times) == 5 and len(calls) == 7  # two warm-ups


def test_time_runner_repeats_short_calls_within_a_sample():
    calls = []

    def run():
        calls.append(1)
        time.sleep(0.002)

    times = time_runner(run, repeats=3, max_seconds=10, min_sample_s=0.02)
    per_sample = (len(calls) - 2) // 3
    assert len(times) == 3 and 3 <= per_sample <= 10 and len(calls) == 2 + 3 * per_sample
    assert all(0.002 <= t < 0.02 for t in times)  # the time of one call, not of a sample


def test_a_contender_that_cannot_run_a_cell_says_why(capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    code = main(["bench", "--shapes", "1,3,2,2", "--backends", "numpy", "--peers", "onnxruntime",
                 "--dtype", "float64", "--repeats", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipped: ONNX Runtime's CPU LSTM kernel is float32 only" in printed
    assert "x ORT" not in printed  # no column for a peer that never ran


def test_train_mode_times_the_fused_step_the_pure_step_and_their_floor():
    report = run_bench(BenchConfig(shapes=[(2, 3, 4, 5)], backends=("numpy",), peers=(),
                                   repeats=3, mode="train", pure=True, isolate=False),
                       progress=None)
    rows = {r["contender"]: r for r in report["results"]}
    assert set(rows) == {"lstm-xp train step numpy cpu", "lstm-xp train step numpy cpu (pure)",
                         "GEMM floor of a train step numpy cpu",
                         *_beside_numba("lstm-xp train step numpy cpu", threads=False)}
    for r in rows.values():
        assert r["median_s"] > 0
        # A training step does three forward passes' worth of matrix products.
        assert r["gflops"] == pytest.approx(3 * lstm_flops((2, 3, 4, 5)) / r["median_s"] / 1e9)


def test_train_contenders_compute_what_they_claim(rng):
    shape = (2, 3, 4, 5)
    x = rng.standard_normal((3, 2, 4)).astype("float32")
    for kernel in ("auto", "pure"):
        grads = lstm_xp_train("numpy", kernel=kernel).prepare(shape, "float32", x)()
        assert grads["weight_hh_l0"].shape == (20, 5)
    d_cat, dx = train_gemm_floor().prepare(shape, "float32", x)()
    assert d_cat.shape == (20, 16) and dx.shape == (6, 4)  # K = 4 + 5 + 1 rounded up to 16


def test_backends_lists_every_kernel_and_why(capsys):
    """`lstm-xp backends`: every backend, and under it every registered kernel with the one
    kernel="auto" picks marked default, the others with the reason they do not run."""
    assert main(["backends"]) == 0
    printed = capsys.readouterr().out
    numpy_block = printed.split("\ncupy")[0]
    default = "numba" if importlib.util.find_spec("numba") else "numpy-fused"
    assert f"kernel {default:14s} default" in numpy_block
    assert "kernel pure           yes" in numpy_block
    assert "kernel jax-jit        no       runs on jax only" in numpy_block
    assert printed.count("kernel pure") == len(BACKENDS)


def _beside_numba(label, threads=True):
    """With the numba extra, numba is NumPy's default kernel and the bench also times the
    fused NumPy kernel beside it, and (forward, on more than one core) numba on one thread."""
    if not importlib.util.find_spec("numba"):
        return []
    from lstm_xp._threads import cores

    extra = [f"{label} (numba) LSTM_XP_NUM_THREADS=1"] if threads and cores() > 1 else []
    return [f"{label} (numpy-fused)", *extra]



def test_progress_prints_lines_off_a_terminal_and_a_bar_on_one():
    import io

    from lstm_xp.bench.progress import Progress

    plain = io.StringIO()
    with Progress(3, plain) as p:
        p.step("a")
        p.advance(2, "b")
        p.note("hello")
    assert plain.getvalue().splitlines() == ["[1/3] a ...", "hello"] and p.done == 3
    pytest.importorskip("rich")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    with Progress(3, tty) as p:
        assert p.quiet_workers  # the bar, not the workers, reports progress
        p.advance(3, "cells")
    assert "3/3" in tty.getvalue() and "cells" in tty.getvalue()


def test_threaded_numba_contender_sets_and_restores_the_thread_count(rng):
    pytest.importorskip("lstm_xp.kernels.numba_scan")
    from lstm_xp import get_num_threads
    from lstm_xp.bench.contenders import _kernel_threads

    before = get_num_threads()
    with _kernel_threads("3"):
        assert get_num_threads() == 3
    assert get_num_threads() == before
    x = rng.standard_normal((3, 2, 4)).astype("float32")
    contender = lstm_xp("numpy", None, "numba", "none", "2")
    assert contender.name == "lstm-xp numpy cpu (numba) LSTM_XP_NUM_THREADS=2"
    assert contender.prepare((2, 3, 4, 5), "float32", x)().shape == (3, 2, 5)
    assert get_num_threads() == before


def test_rounds_take_turns_and_pool_each_cells_samples(monkeypatch):
    """With rounds, every contender runs once a round (A B A B, not A A B B), each time for
    its share of the repeats, and a cell's median is over the samples of all rounds."""
    from lstm_xp.bench import runner

    turns = []
    measure = runner.measure

    def recording(spec, config, progress):
        turns.append(spec[0])
        assert config.repeats == 2 and config.memory == (len(turns) <= 2)
        return measure(spec, config, progress)

    monkeypatch.setattr(runner, "measure", recording)
    config = BenchConfig(shapes=[(1, 3, 2, 2), (2, 3, 2, 2)], backends=(), peers=("seed",),
                         repeats=4, rounds=2, max_seconds=60, isolate=False)
    report = run_bench(config, progress=None)
    assert turns == ["floor", "seed", "floor", "seed"]
    assert len(report["results"]) == 4  # (contender, shape) cells, not one per round
    for r in report["results"]:
        assert len(r["times_s"]) == 4
        assert r["median_s"] == sorted(r["times_s"])[1] / 2 + sorted(r["times_s"])[2] / 2
    assert "2 in each of 2 rounds" in markdown(report)
