"""The README's main job: ``lstm-xp bench --quick --out DIR`` on a machine with no GPU."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import subprocess
import sys
import time

import numpy as np
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


def _row(name, kind, ms, device="cpu"):
    """A measured row of a report at one shape, ``ms`` its median."""
    return {"contender": name, "kind": kind, "device": device, "shape": [4, 10, 3, 5],
            "median_s": ms / 1e3, "sequences_per_s": 4e3 / ms, "gflops": 1.0,
            "peak_bytes": None, "skipped": None}


def _table_lines(rows):
    """The text table of ``rows``, each line's fields by its contender."""
    from lstm_xp.bench.report import text_table

    text = text_table({"results": rows})
    return {line.split("  ")[0]: line.split() for line in text.splitlines()}


def test_rows_on_a_gpu_compare_with_torch_on_that_gpu():
    """'x torch' divides torch.nn.LSTM's time on the row's own device by the row's: a GPU row
    against torch on that GPU, not against torch on the CPU."""
    gpu = "cuda:0 (Some GPU)"
    lines = _table_lines([_row("lstm-xp cupy cuda:0 (Some GPU)", "lstm-xp", 4.0, gpu),
                          _row("lstm-xp torch cuda:0", "lstm-xp", 8.0, "cuda:0"),
                          _row("lstm-xp numpy cpu", "lstm-xp", 5.0),
                          _row("torch.nn.LSTM cpu", "peer", 10.0),
                          _row("torch.nn.LSTM cuda:0 (Some GPU)", "peer", 2.0, gpu)])
    assert lines["lstm-xp cupy cuda:0 (Some GPU)"][-1] == "0.50"  # 2 ms / 4 ms
    assert lines["lstm-xp torch cuda:0"][-1] == "0.25"
    assert lines["lstm-xp numpy cpu"][-1] == "2.00"  # 10 ms / 5 ms
    assert lines["torch.nn.LSTM cpu"][2:] == ["10.000", "400", "1.0"]  # none with itself


def test_rows_with_lengths_compare_with_peers_on_the_same_lengths():
    """A row timed with lengths is compared with torch given the same lengths where torch
    ran with them (training, through packed sequences), else with torch over whole
    sequences; rows without lengths never with torch's lengths row. ONNX Runtime alike."""
    lines = _table_lines([_row("lstm-xp train step numpy cpu", "lstm-xp", 4.0),
                          _row("lstm-xp train step numpy cpu lengths=random", "lstm-xp", 5.0),
                          _row("lstm-xp train step numpy cpu lengths=one-short", "lstm-xp", 2.0),
                          _row("torch.nn.LSTM train step cpu", "peer", 8.0),
                          _row("torch.nn.LSTM train step cpu lengths=random", "peer", 15.0)])
    assert lines["lstm-xp train step numpy cpu"][-1] == "2.00"  # 8 ms / 4 ms
    assert lines["lstm-xp train step numpy cpu lengths=random"][-1] == "3.00"  # 15 / 5
    assert lines["lstm-xp train step numpy cpu lengths=one-short"][-1] == "4.00"  # 8 / 2
    lines = _table_lines([_row("lstm-xp numpy cpu lengths=random", "lstm-xp", 5.0),
                          _row("lstm-xp numpy cpu lengths=one-short", "lstm-xp", 4.0),
                          _row("onnxruntime LSTM op cpu", "peer", 8.0),
                          _row("onnxruntime LSTM op cpu (no spinning)", "peer", 1.0),
                          _row("onnxruntime LSTM op cpu lengths=random", "peer", 6.0)])
    assert lines["lstm-xp numpy cpu lengths=random"][-1] == "1.20"  # ORT's own lengths
    assert lines["lstm-xp numpy cpu lengths=one-short"][-1] == "2.00"  # ORT over all steps


def test_lengths_are_timed_in_training_and_given_to_the_peers_too():
    from lstm_xp.bench.runner import contender_specs

    for mode, ours, peer in [("train", "lstm_xp_train", "torch_train"),
                             ("forward", "lstm_xp", "torch")]:
        specs = contender_specs(BenchConfig(shapes=[(2, 3, 4, 5)], backends=("numpy",),
                                            peers=("torch", "onnxruntime"),
                                            lengths=("random",), mode=mode))
        assert [ours, "numpy", None, "auto", "random"] in specs
        assert [peer, "cpu", "random"] in specs and [peer, "cpu"] in specs
        ort = [s for s in specs if s[0] == "onnxruntime"]  # inference only
        assert ort == ([] if mode == "train" else [["onnxruntime", True],
                                                   ["onnxruntime", True, "random"]])


def test_peers_with_lengths_stop_each_sequence_at_its_length(rng):
    """torch.nn.LSTM through packed sequences and ONNX Runtime with sequence_lens: outputs
    past each length are zero and torch's input gradient there too, and lstm-xp's training
    step gets the lengths: its
    gradients are those of a step given them by hand, unlike those without."""
    pytest.importorskip("torch")
    from lstm_xp import LSTM
    from lstm_xp.bench.contenders import (
        onnxruntime_lstm,
        padded_lengths,
        torch_lstm,
        torch_train,
    )

    shape = (5, 8, 3, 4)
    x = rng.standard_normal((8, 5, 3)).astype("float32")
    valid = padded_lengths(shape, "random")
    assert valid.min() < 8
    past = np.arange(8)[:, None] >= valid[None, :]  # (T, B)
    y = torch_lstm(lengths="random").prepare(shape, "float32", x)().numpy()
    dx = torch_train(lengths="random").prepare(shape, "float32", x)().numpy()
    outputs = [y, dx]
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        y_ort = onnxruntime_lstm(lengths="random").prepare(shape, "float32", x)()
        outputs.append(y_ort[:, 0])  # (T, directions, B, H)
    for a in outputs:
        assert a.shape[:2] == (8, 5)
        assert np.all(a[past] == 0) and np.all(np.any(a[~past] != 0, axis=-1))
    got = lstm_xp_train("numpy", lengths="random").prepare(shape, "float32", x)()
    model = LSTM(3, 4, seed=0, dtype="float32")
    _, _, tape = model.forward_train(x, lengths=valid)
    _, _, want = model.backward(tape, np.ones((8, 5, 4), "float32"))
    full = lstm_xp_train("numpy").prepare(shape, "float32", x)()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    assert not np.allclose(full["weight_hh_l0"], want["weight_hh_l0"])


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
    times = time_runner(lambda: calls.append(1), repeats=5, max_seconds=10, min_sample_s=0,
                        warmup_s=0)
    assert len(times) == 5 and len(calls) == 7  # two warm-ups


def test_time_runner_warms_up_for_warmup_s():
    """Warm-up calls go on until they have lasted ``warmup_s`` together, and stop then.
    (The runner sums the calls' own times, not the gaps between them: a test that compared
    wall-clock stamps failed in CI when the host paused the process between two calls.)"""
    starts, ends = [], []

    def run():
        starts.append(time.perf_counter())
        time.sleep(0.002)
        ends.append(time.perf_counter())

    time_runner(run, repeats=3, max_seconds=10, min_sample_s=0, warmups=1, warmup_s=0.03)
    warm = len(starts) - 3
    lasted = [end - start for start, end in zip(starts, ends, strict=True)]
    assert warm >= 2
    # The runner's clock starts just before each call and stops just after it, so its sum
    # is this one's plus a few microseconds a call.
    assert ends[warm - 1] - starts[0] >= 0.029  # the warm-ups lasted 30 ms
    assert sum(lasted[:warm - 1]) < 0.03  # and one fewer would not have


def test_time_runner_repeats_short_calls_within_a_sample():
    calls = []

    def run():
        calls.append(1)
        time.sleep(0.002)

    times = time_runner(run, repeats=3, max_seconds=10, min_sample_s=0.02, warmup_s=0)
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
                         *_beside_numba("lstm-xp train step numpy cpu", forward=False)}
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


def _beside_numba(label, forward=True):
    """With the numba extra, numba is NumPy's default kernel and the bench also times the
    fused NumPy kernel beside it, and (forward) a frozen copy of the model and, on more
    than one core, numba on one thread."""
    if not importlib.util.find_spec("numba"):
        return []
    from lstm_xp._threads import cores

    extra = [f"{label} frozen"] if forward else []
    extra += [f"{label} (numba) LSTM_XP_NUM_THREADS=1"] if forward and cores() > 1 else []
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


def test_the_memory_of_a_compiled_call_counts_its_work_buffers(rng):
    """The bench's memory column for the compiled kernel counts a call's work buffers,
    also those a call on one thread makes in numba (whose allocator is Python's raw one,
    which tracemalloc traces): at (B, T, I, H) = (2, 6, 64, 64) the weights it packs take
    128 KiB."""
    pytest.importorskip("lstm_xp.kernels.numba_scan")
    x = rng.standard_normal((6, 2, 64)).astype("float32")
    contender = lstm_xp("numpy", None, "numba")
    assert contender.memory((2, 6, 64, 64), "float32", x) >= 4 * 64 * 128 * 4


def test_rounds_take_turns_shape_by_shape_and_pool_each_cells_samples(monkeypatch):
    """At each shape every contender runs once a round, the order rotated a round, each
    time for its share of the repeats (memory in the first round), ``pause_s`` between one
    turn's end and the next one's start; a cell's median is over the samples of all rounds."""
    from lstm_xp.bench import turns as t

    record = []
    turn = t.Turns.turn

    def recording(self, index, repeats, max_seconds, memory):
        start = time.perf_counter()
        m = turn(self, index, repeats, max_seconds, memory)
        record.append((self.contender.kind, index, repeats, memory, start,
                       time.perf_counter()))
        return m

    monkeypatch.setattr(t.Turns, "turn", recording)
    config = BenchConfig(shapes=[(1, 3, 2, 2), (2, 3, 2, 2)], backends=(), peers=("seed",),
                         repeats=4, rounds=2, max_seconds=60, isolate=False, pause_s=0.05)
    report = run_bench(config, progress=None)
    assert [(kind, index, memory) for kind, index, _, memory, _, _ in record] == [
        ("floor", 0, True), ("peer", 0, True), ("peer", 0, False), ("floor", 0, False),
        ("floor", 1, True), ("peer", 1, True), ("peer", 1, False), ("floor", 1, False)]
    assert {repeats for _, _, repeats, _, _, _ in record} == {2}
    gaps = [b[4] - a[5] for a, b in itertools.pairwise(record)]
    assert min(gaps) >= 0.05
    assert [r["contender"] for r in report["results"]] == [  # the specs' order, shape by shape
        "GEMM floor numpy cpu", "GEMM floor numpy cpu",
        "seed (NumPy, per-gate, column vectors)", "seed (NumPy, per-gate, column vectors)"]
    for r in report["results"]:
        assert len(r["times_s"]) == 4
        assert r["median_s"] == sorted(r["times_s"])[1] / 2 + sorted(r["times_s"])[2] / 2
        times = r["times_s"]  # two a turn, in the order of the rounds
        assert r["turns_s"] == [(times[0] + times[1]) / 2, (times[2] + times[3]) / 2]
    assert "2 in each of 2 rounds" in markdown(report)


def test_paired_ratio_is_the_median_of_the_rounds_ratios():
    """Each round's ratio pairs the two contenders' turns at a shape; on a host that slowed
    down in the last rounds, where lstm-xp's turns happened to be timed, the ratio of the
    medians (2 / 3.5 here) would say it is slower, the rounds say it is 2x faster."""
    from lstm_xp.bench.report import paired_ratio, text_table

    def row(name, kind, turns):
        return {"contender": name, "kind": kind, "device": "cpu", "shape": [1, 2, 3, 4],
                "median_s": sorted(turns)[len(turns) // 2], "sequences_per_s": 1.0,
                "gflops": 1.0, "peak_bytes": None, "skipped": None, "turns_s": turns}

    ours = row("lstm-xp numpy cpu", "lstm-xp", [1.0, 1.0, 3.5, 3.5, 3.5])
    ort = row("onnxruntime LSTM op cpu", "peer", [2.0, 2.0, 2.0, 7.0, 7.0])
    assert paired_ratio(ours, ort) == (2.0, 5)  # ratios 2, 2, 4/7, 2, 2
    assert ort["median_s"] / ours["median_s"] == pytest.approx(2 / 3.5)
    assert paired_ratio(ours, {**ort, "turns_s": [2.0, 2.0]}) is None  # too few rounds
    assert paired_ratio(row("a", "lstm-xp", [1.0, 2.0, 4.0, 8.0]),
                        row("b", "peer", [3.0, 3.0, 3.0, 3.0])) == ((1.5 + 0.75) / 2, 4)
    text = text_table({"results": [ours, ort]})
    assert "paired by round, lstm-xp numpy cpu: x ORT 2.00 (5 rounds)" in text


def _counting_contender(monkeypatch, fail_at=None):
    """A contender ``["counting"]`` that records each shape it prepares and each call, and
    whose turns raise Unavailable from shape index ``fail_at`` on (as a worker that exited
    would); returns the record."""
    from lstm_xp.bench import contenders as c
    from lstm_xp.bench import turns as t

    record = {"prepared": [], "calls": 0}

    def counting():
        def prepare(shape, dtype, x_host):
            record["prepared"].append(shape)

            def run():  # longer than a sample's least: one call a sample
                record["calls"] += 1
                time.sleep(0.03)
            return run
        return c.Contender("counting", "peer", "cpu", prepare)

    monkeypatch.setitem(c.FACTORIES, "counting", counting)
    monkeypatch.setattr("lstm_xp.bench.runner.contender_specs",
                        lambda config: [["counting"], ["seed"]])
    turn = t.Turns.turn

    def failing(self, index, *args):
        if self.contender.name == "counting" and fail_at is not None and index >= fail_at:
            raise c.Unavailable("its worker process exited with code -9")
        return turn(self, index, *args)

    monkeypatch.setattr(t.Turns, "turn", failing)
    return record


def test_a_contender_prepares_each_shape_once_and_warms_up_once_a_later_turn(monkeypatch):
    record = _counting_contender(monkeypatch)
    config = BenchConfig(shapes=[(1, 3, 2, 2), (2, 3, 2, 2)], repeats=3, rounds=3,
                         max_seconds=60, isolate=False, pause_s=0, warmup_s=0)
    report = run_bench(config, progress=None)
    assert record["prepared"] == [(1, 3, 2, 2), (2, 3, 2, 2)]
    counted = [r for r in report["results"] if r["contender"] == "counting"]
    assert [len(r["times_s"]) for r in counted] == [3, 3]
    # Each shape: 2 warm-ups in its first turn, 1 in each later one, and 1 sample a turn.
    assert record["calls"] == 2 * (2 + 1 + 1 + 3)


def test_loading_building_and_a_first_call_are_timed_apart_from_the_samples(monkeypatch):
    """A contender slow to load, to build and at its first call at each shape (as a
    compiled kernel compiles there): those times are reported, and not in the samples."""
    from lstm_xp.bench import contenders as c
    from lstm_xp.bench.report import first_calls, markdown, text_table

    def slow_start():
        time.sleep(0.1)  # importing its library

        def prepare(shape, dtype, x_host):
            time.sleep(0.05)
            calls = []

            def run():
                time.sleep(0.25 if not calls else 0.001)  # compiling, at its first call
                calls.append(1)
            return run
        return c.Contender("slow start", "peer", "cpu", prepare)

    def slow_always():  # every call as slow as the other's first: nothing to note
        def prepare(shape, dtype, x_host):
            return lambda: time.sleep(0.25)
        return c.Contender("slow always", "peer", "cpu", prepare)

    monkeypatch.setitem(c.FACTORIES, "slow", slow_start)
    monkeypatch.setitem(c.FACTORIES, "steady", slow_always)
    monkeypatch.setattr("lstm_xp.bench.runner.contender_specs",
                        lambda config: [["slow"], ["steady"]])
    monkeypatch.setattr("lstm_xp.bench.runner.SLOW_FIRST_CALL_S", 0.2)
    shapes = [(1, 3, 2, 2), (2, 3, 2, 2), (3, 3, 2, 2)]
    config = BenchConfig(shapes=shapes, repeats=4, rounds=2, max_seconds=60, isolate=False,
                         pause_s=0, warmup_s=0)
    progress = io.StringIO()
    report = run_bench(config, progress=progress)
    said = [line for line in progress.getvalue().splitlines() if "first call" in line]
    assert len(said) == 3 and all("slow start: its first call at" in s for s in said)
    assert "(1, 3, 2, 2) took 0." in said[0] and "s more than a sample" in said[0]
    steady = [r for r in report["results"] if r["contender"] == "slow always"]
    assert len(steady) == 3 and all(r["first_call_s"] >= 0.25 for r in steady)
    cells = [r for r in report["results"] if r["contender"] == "slow start"]
    assert [tuple(r["shape"]) for r in cells] == shapes
    assert report["load_s"]["slow start"] >= 0.1
    for r in cells:
        assert 0.05 <= r["setup_s"] < 0.25 and r["first_call_s"] >= 0.25
        assert len(r["times_s"]) == 4 and max(r["times_s"]) < 0.1
    row, steady_row = first_calls(report)
    assert row[0] == "slow start" and row[2] == "(1, 3, 2, 2)" and steady_row[0] == "slow always"
    assert float(row[1]) >= 0.1 and float(row[3]) >= 0.05 and float(row[4]) >= 0.25
    assert 0.05 <= float(row[5]) < 0.25 and 0.24 <= float(row[6]) < 0.5  # beyond a median call
    assert "| slow start |" in markdown({**report, "machine": {}})
    assert "First calls" in text_table(report)
    old = {**report, "results": [{k: v for k, v in r.items()
                                  if k not in ("setup_s", "first_call_s")} for r in cells]}
    assert first_calls(old) == [] and "First calls" not in text_table(old)


def test_a_contender_that_fails_mid_run_keeps_its_cells_and_the_others_go_on(monkeypatch):
    _counting_contender(monkeypatch, fail_at=1)
    shapes = [(1, 3, 2, 2), (2, 3, 2, 2), (3, 3, 2, 2)]
    config = BenchConfig(shapes=shapes, repeats=2, rounds=2, max_seconds=60, isolate=False,
                         pause_s=0)
    report = run_bench(config, progress=None)
    cells = {(r["contender"], tuple(r["shape"])) for r in report["results"]}
    seed_name = "seed (NumPy, per-gate, column vectors)"
    assert cells == {("counting", shapes[0])} | {(seed_name, s) for s in shapes}
    assert report["skipped"] == {}  # it ran a shape: its cells stand, the rest are missing


def test_worker_serves_turns_and_exits_when_its_input_ends():
    from lstm_xp.bench import contenders as c
    from lstm_xp.bench.turns import WorkerTurns

    config = BenchConfig(shapes=[(1, 3, 2, 2), (2, 3, 2, 2)], dtype="float32")
    worker = WorkerTurns(["lstm_xp", "numpy"], config)
    try:
        assert worker.ready() == "lstm-xp numpy cpu"
        m = worker.turn(1, 3, 10.0, True)
    finally:
        worker.close()
    assert m.shape == (2, 3, 2, 2) and len(m.times_s) == 3 and m.peak_bytes > 0
    assert m.setup_s > 0 and m.first_call_s > 0 and worker.load_s > 0  # kept apart
    assert worker._proc.returncode == 0
    with pytest.raises(c.Unavailable, match="unknown backend 'nonsense'"):
        WorkerTurns(["lstm_xp", "nonsense"], config).ready()


def test_a_killed_worker_reads_as_a_contender_that_cannot_go_on():
    from lstm_xp.bench import contenders as c
    from lstm_xp.bench.turns import WorkerTurns

    worker = WorkerTurns(["seed"], BenchConfig(shapes=[(1, 3, 2, 2)]))
    try:
        worker.ready()
        worker._proc.kill()
        with pytest.raises(c.Unavailable, match="exited with code -9"):
            worker.turn(0, 3, 10.0, False)
    finally:
        worker.close()


def test_what_a_contender_prints_does_not_reach_the_workers_answers(tmp_path):
    """The worker's answers are the only lines on its stdout: what a library prints there,
    from Python or from C (fd 1), goes to stderr."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os, sys\n"
        "from lstm_xp.bench import contenders as c, worker\n"
        "def noisy():\n"
        "    print('from python'); os.write(1, b'from C\\n')\n"
        "    return c.seed()\n"
        "c.FACTORIES['noisy'] = noisy\n"
        "worker.main()\n")
    config = BenchConfig(shapes=[(1, 3, 2, 2)])
    requests = (json.dumps({"spec": ["noisy"], "config": config.as_dict()}) + "\n"
                + json.dumps({"shape": 0, "repeats": 3, "max_seconds": 5.0, "memory": False})
                + "\n")
    out = subprocess.run([sys.executable, str(script)], input=requests, capture_output=True,
                         text=True, check=True, timeout=120)
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    ready = json.loads(lines[0])
    assert ready["ready"] == "seed (NumPy, per-gate, column vectors)" and ready["load_s"] >= 0
    assert len(json.loads(lines[1])["times_s"]) == 3
    assert "from python" in out.stderr and "from C" in out.stderr
