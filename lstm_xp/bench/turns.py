"""A contender's turns at the benchmark's shapes: each turn times one shape for a share of the
repeats (:func:`lstm_xp.bench.runner.run_bench` has the contenders take turns shape by shape).

:class:`Turns` runs them in this process. :class:`WorkerTurns` runs them in a worker process
of the contender's own (``python -m lstm_xp.bench.worker``), which stays up for the whole run:
a library's threads never share a process with another library (in one process torch's
spinning OpenMP threads slowed NumPy up to 5x), and a turn costs no process start, so the
contenders can take turns seconds apart. The worker reads one JSON line a request on stdin and
answers one JSON line a request on stdout: first ``{"spec", "config"}``, answered
``{"ready": name}`` or ``{"unavailable": reason}``; then ``{"shape", "repeats",
"max_seconds", "memory"}`` for each turn, answered with the turn's :class:`Measurement`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import IO, Any, TextIO

from . import contenders as c
from .cells import BenchConfig, Measurement, Shape, input_for, time_runner


def spec_name(spec: list[Any]) -> str:
    """A spec's words, ``"lstm_xp numpy None numba"``: the key of its contender in a run."""
    return " ".join(str(a) for a in spec)


class Turns:
    """The turns of the contender ``spec`` names (``[factory, *args]``, see
    :func:`lstm_xp.bench.contenders.make`) at ``config.shapes``, in this process. The
    runner of the shape it timed last stays prepared for its next turn there: the first turn
    at a shape builds it and calls it once, timing both apart from the samples
    (``Measurement.setup_s``, ``first_call_s``: a compiled kernel's compile or cache load),
    then warms it up once more; a later turn warms it up once; each warm-up lasts at least
    ``config.warmup_s`` (:func:`~lstm_xp.bench.cells.time_runner`). ``load_s``: the
    seconds the contender took to load (its library imported).

    Raises
    ------
    lstm_xp.bench.contenders.Unavailable
        The contender cannot run here (its library or device is missing).
    """

    def __init__(self, spec: list[Any], config: BenchConfig) -> None:
        t0 = time.perf_counter()
        self.contender = c.make(spec)
        self.load_s = time.perf_counter() - t0
        self.name = self.contender.name
        self.config = config
        self._prepared: tuple[int, c.Runner] | None = None

    def turn(self, index: int, repeats: int, max_seconds: float, memory: bool) -> Measurement:
        """Time shape ``config.shapes[index]`` for up to ``repeats`` samples or
        ``max_seconds`` (see :func:`~lstm_xp.bench.cells.time_runner`), and its peak memory
        when ``memory``; a shape the contender cannot run comes back with ``skipped`` set."""
        shape = _shape(self.config.shapes[index])
        cont, dtype = self.contender, self.config.dtype
        m = Measurement(cont.name, cont.kind, cont.device, shape, mode=self.config.mode)
        try:
            if self._prepared is None or self._prepared[0] != index:
                self._prepared = None  # the last shape's model and input go first
                t0 = time.perf_counter()
                run = cont.prepare(shape, dtype, input_for(shape, dtype))
                t1 = time.perf_counter()
                run()  # the first of the turn's two warm-ups, timed on its own
                m.setup_s, m.first_call_s = t1 - t0, time.perf_counter() - t1
                self._prepared = (index, run)
            m.times_s = time_runner(self._prepared[1], repeats, max_seconds, warmups=1,
                                    warmup_s=self.config.warmup_s)
            m.turns_s = [statistics.median(m.times_s)]
            if memory and cont.memory is not None:
                m.peak_bytes = cont.memory(shape, dtype, input_for(shape, dtype))
        except c.Unavailable as exc:
            m.skipped = str(exc)
        return m

    def release(self) -> None:
        """Nothing to do in this process (:meth:`WorkerTurns.release`)."""

    def close(self) -> None:
        self._prepared = None


class WorkerTurns:
    """:class:`Turns` in a worker process of its own, started here; :meth:`ready` waits
    for it to load the contender. ``name``: the spec's words until then, the contender's
    name after."""

    def __init__(self, spec: list[Any], config: BenchConfig) -> None:
        self.name = spec_name(spec)  # the contender's own, once ready
        self.load_s: float | None = None  # as the worker timed it (Turns.load_s), once ready
        # stderr passes through: the worker's warnings (a kernel falling back, say) show.
        self._proc = subprocess.Popen([sys.executable, "-m", "lstm_xp.bench.worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._send({"spec": spec, "config": config.as_dict()})

    def ready(self) -> str:
        """The contender's name, once the worker has loaded it.

        Raises
        ------
        lstm_xp.bench.contenders.Unavailable
            The contender cannot run here, or its worker exited (the reason says which).
        """
        answer = self._answer()
        if "unavailable" in answer:
            self.close()
            raise c.Unavailable(answer["unavailable"])
        self.name = str(answer["ready"])
        self.load_s = float(answer["load_s"])
        return self.name

    def turn(self, index: int, repeats: int, max_seconds: float, memory: bool) -> Measurement:
        """:meth:`Turns.turn` in the worker.

        Raises
        ------
        lstm_xp.bench.contenders.Unavailable
            The worker exited (crashed, or was killed) before it answered.
        """
        self._send({"shape": index, "repeats": repeats, "max_seconds": max_seconds,
                    "memory": memory})
        return Measurement.from_dict(self._answer())

    def release(self) -> None:
        """Close the worker's stdin: it exits once it has answered what it was sent (the
        run's end releases every worker first, then waits for each: they exit together)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:  # it has gone already
                pass

    def close(self) -> None:
        """End the worker: :meth:`release`, then wait for it to exit (killed after 10 s)."""
        self.release()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            _write_line(self._proc.stdin, message)
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker has gone: _answer says how

    def _answer(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise c.Unavailable(f"its worker process exited with code {code} (its error, if "
                                "any, is printed above)")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _shape(raw: Any) -> Shape:
    """A shape as four ints (lists, when the config came through JSON)."""
    return int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3])


def _write_line(stream: IO[str] | None, message: dict[str, Any]) -> None:
    """One JSON message and a newline on ``stream``, flushed."""
    if stream is None:
        raise ValueError("no stream")
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def serve(requests: TextIO, answers: TextIO) -> None:
    """The worker's side: read the contender from ``requests``, then time its turns until
    ``requests`` ends, answering each on ``answers`` (see the module)."""
    first = json.loads(requests.readline())
    config = BenchConfig.from_dict(first["config"])
    try:
        turns = Turns(first["spec"], config)
    except c.Unavailable as exc:
        _write_line(answers, {"unavailable": str(exc)})
        return
    _write_line(answers, {"ready": turns.contender.name, "load_s": turns.load_s})
    for line in requests:
        ask = json.loads(line)
        m = turns.turn(int(ask["shape"]), int(ask["repeats"]), float(ask["max_seconds"]),
                       bool(ask["memory"]))
        _write_line(answers, m.as_dict())
