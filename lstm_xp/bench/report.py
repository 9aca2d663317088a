"""Turn benchmark results into a table, Markdown, JSON and a PNG plot."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..io import write_atomic
from .runner import repeats_a_round

PEERS = (("torch.nn.LSTM cpu", "x torch"), ("onnxruntime LSTM op cpu", "x ORT"),
         ("seed (NumPy, per-gate, column vectors)", "x seed"),
         ("torch.nn.LSTM train step cpu", "x torch train"))
#: Peers that also run on GPUs: a row is compared with the one on its own device.
_TORCH = ("torch.nn.LSTM cpu", "torch.nn.LSTM train step cpu")


def _device(label: str) -> str:
    """The device of a row without the GPU's name: ``"cuda:0 (NVIDIA H200)"`` -> ``"cuda:0"``."""
    return label.split(" (")[0]


def _lengths_of(label: str) -> str:
    """The lengths a contender ran with, as its label ends (``" lengths=random"``), or ""."""
    return label[label.find(" lengths="):] if " lengths=" in label else ""


def _peer_for(row: dict[str, Any], peer: str, here: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The measured ``peer`` to compare ``row`` with: torch on the row's own device, the
    others (CPU only) as they are; each with the row's lengths where it ran with them, else
    over whole sequences; None where it did not run, or for the peer itself."""
    if peer in _TORCH:
        stem = peer.removesuffix(" cpu")
        found = [r for r in here if r["kind"] == "peer" and r["contender"].startswith(stem)
                 and "train" not in r["contender"].removeprefix(stem)
                 and _device(r["device"]) == _device(row["device"]) and r["median_s"]]
    else:
        found = [r for r in here if r["median_s"]
                 and r["contender"] in (peer, peer + _lengths_of(r["contender"]))]
    lengths = _lengths_of(row["contender"])
    found = ([r for r in found if _lengths_of(r["contender"]) == lengths]
             or [r for r in found if not _lengths_of(r["contender"])])
    return found[0] if found and found[0] is not row else None


#: Rounds a paired ratio needs (:func:`paired_ratio`).
MIN_PAIRED_ROUNDS = 3


def paired_ratio(row: dict[str, Any], peer: dict[str, Any]) -> tuple[float, int] | None:
    """The median over rounds of ``peer``'s time in a round divided by ``row``'s in the same
    round (each a turn's median), and how many rounds; None with fewer than
    :data:`MIN_PAIRED_ROUNDS` rounds in common. A shape's turns lie seconds apart, so each
    round compares the two at nearly the same speed of a drifting host, where the ratio of
    the two medians can pair one contender's fast rounds with the other's slow ones."""
    ours, theirs = row.get("turns_s") or [], peer.get("turns_s") or []
    rounds = min(len(ours), len(theirs))
    if rounds < MIN_PAIRED_ROUNDS:
        return None
    return statistics.median(theirs[i] / ours[i] for i in range(rounds)), rounds


def _paired_lines(results: list[dict[str, Any]], shape: tuple[int, ...]) -> list[str]:
    """For each lstm-xp row at ``shape``, its :func:`paired_ratio` against each peer."""
    here = [r for r in results if tuple(r["shape"]) == shape]
    lines = []
    for r in here:
        if r["kind"] != "lstm-xp" or not r["median_s"]:
            continue
        found, rounds = [], []
        for peer, label in PEERS:
            p = _peer_for(r, peer, here)
            paired = paired_ratio(r, p) if p else None
            if paired is not None:
                found.append(f"{label} {paired[0]:.2f}")
                rounds.append(paired[1])
        if found:
            counted = f"{min(rounds)}" if min(rounds) == max(rounds) else \
                f"{min(rounds)}-{max(rounds)}"
            lines.append(f"{r['contender']}: " + ", ".join(found) + f" ({counted} rounds)")
    return lines


def _table(results: list[dict[str, Any]]) -> tuple[list[str], list[tuple[tuple[int, ...],
                                                                   list[list[str]]]]]:
    """The header, and per shape a row per contender: time, throughput, ratios against the
    peers that ran and against the floor on the contender's device."""
    measured = {r["contender"] for r in results if r["median_s"]}
    peers = [(name, label) for name, label in PEERS if name in measured]
    header = ["contender", "median ms", "seq/s", "GFLOP/s", "peak MiB",
              *(label for _, label in peers), "/ floor"]
    shapes: list[tuple[int, ...]] = []
    for r in results:
        if tuple(r["shape"]) not in shapes:
            shapes.append(tuple(r["shape"]))
    out = []
    for shape in shapes:
        here = [r for r in results if tuple(r["shape"]) == shape]
        floors = {r["device"]: r["median_s"] for r in here
                  if r["kind"] == "floor" and r["median_s"]}
        rows = []
        for r in here:
            t = r["median_s"]
            if not t:
                rows.append([r["contender"], "skipped: " + (r["skipped"] or "?")]
                            + [""] * (len(header) - 2))
                continue
            ratios = []
            for peer, _ in peers:
                p = _peer_for(r, peer, here)
                ratios.append(f"{p['median_s'] / t:.2f}" if p else "")
            floor = floors.get(r["device"])
            rows.append([
                r["contender"], f"{t * 1e3:.3f}", f"{r['sequences_per_s']:.0f}",
                f"{r['gflops']:.1f}",
                "" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.2f}",
                *ratios,
                f"{t / floor:.2f}" if floor and r["kind"] != "floor" else "",
            ])
        out.append((shape, rows))
    return header, out


FIRST_CALLS_HEADER = ["contender", "load s", "first shape", "build s", "first call s",
                      "other shapes: build s", "first call beyond a median one s"]
FIRST_CALLS_NOTE = ("Kept out of the medians: 'load' = the contender's library imported; "
                    "'build' = its model (weights, input) made at a shape; 'first call' = its "
                    "first call there, where a compiled kernel compiles or loads its machine "
                    "code from the disk cache. At the other shapes: the longest build, and the "
                    "most a first call took beyond that shape's median call.")


def first_calls(report: dict[str, Any]) -> list[list[str]]:
    """A row per contender that ran: the seconds it took to load, to build its first
    shape's model and to run that model's first call, and at the other shapes the longest
    build and the most a first call took beyond the shape's median call (a first call at a
    large shape is long in itself); empty for a report from before these were kept."""
    loads = report.get("load_s") or {}
    rows = []
    for name in dict.fromkeys(r["contender"] for r in report["results"]):
        built = [r for r in report["results"] if r["contender"] == name
                 and r.get("first_call_s") is not None]
        if not built:
            continue
        first, others = built[0], built[1:]
        load = loads.get(name)
        rows.append([name, "" if load is None else f"{load:.2f}", str(tuple(first["shape"])),
                     f"{first['setup_s']:.3f}", f"{first['first_call_s']:.3f}",
                     *([f"{max(r['setup_s'] for r in others):.3f}",
                        f"{max(r['first_call_s'] - (r['median_s'] or 0) for r in others):.3f}"]
                       if others else ["", ""])])
    return rows


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of strings as lines of left-aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(*rows, strict=False)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False))
            for row in rows]


def text_table(report: dict[str, Any]) -> str:
    """A plain-text table per shape."""
    lines = []
    header, tables = _table(report["results"])
    for shape, rows in tables:
        lines.append(f"\n(B, T, I, H) = {shape}")
        lines += _aligned([header, *rows])
        lines += [f"paired by round, {line}" for line in
                  _paired_lines(report["results"], shape)]
    lines.append("\n'x peer' = the peer's median time / this row's (above 1: faster than the "
                 "peer; torch on the row's own device); '/ floor' = this row's time / the GEMM "
                 "floor's on its device; 'paired by round' = the median over rounds of the "
                 "peer's time / this row's in the same round.")
    firsts = first_calls(report)
    if firsts:
        lines += ["\nFirst calls", *_aligned([FIRST_CALLS_HEADER, *firsts]), FIRST_CALLS_NOTE]
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """Markdown tables, one per shape, with the machine they were measured on."""
    m = report["machine"]
    lines = [f"Machine: {m.get('processor')} ({m.get('cpu_count')} cores), "
             f"Python {m.get('python')}, NumPy {m.get('numpy')}"
             + "".join(f", {k} {m[k]}" for k in ("torch", "onnxruntime", "jax", "cupy-cuda12x",
                                               "cupy-cuda13x") if k in m)
             + "".join(f", BLAS {b.get('internal_api')} {b.get('version')} "
                       f"{b.get('architecture')} x{b.get('num_threads')}"
                       for b in m.get("blas", [])),
             "", f"dtype {report['config']['dtype']}, {_sampling(report['config'])}.", ""]
    header, tables = _table(report["results"])
    for shape, rows in tables:
        lines += [f"**(B, T, I, H) = {shape}**", "", *_markdown_table(header, rows)]
        lines.append("")
        lines += [f"- paired by round, {line}" for line in
                  _paired_lines(report["results"], shape)]
        lines.append("")
    lines.append("`x peer` = the peer's median time divided by this row's (above 1: faster than "
                 "the peer). `/ floor` = this row's time divided by the GEMM floor on its device "
                 "(input-projection GEMM plus T-1 recurrent GEMMs, timed alone). `Paired by "
                 "round` = the median over rounds of the peer's time divided by this row's in "
                 "the same round (the contenders' turns at a shape lie seconds apart).")
    firsts = first_calls(report)
    if firsts:
        lines += ["", "**First calls**", "", *_markdown_table(FIRST_CALLS_HEADER, firsts), "",
                  FIRST_CALLS_NOTE]
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(row) + " |" for row in (header, ["---"] * len(header), *rows)]


def plot(report: dict[str, Any], path: Path) -> str | None:
    """One panel per shape: each contender's throughput (sequences/s) as a bar, lstm-xp's
    kernels, the peers and the GEMM floor in their own colours, each bar labelled with its
    speed relative to ``torch.nn.LSTM`` on the same device where that ran. Returns None, or
    the reason no plot was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install lstm-xp[plot])"
    results = [r for r in report["results"] if r["median_s"]]
    shapes = sorted({tuple(r["shape"]) for r in results}, key=lambda s: (s[0], s[3], s[1]))
    if not shapes:
        return "no contender ran"
    cols = min(3, len(shapes))
    rows = -(-len(shapes) // cols)
    names = sorted({r["contender"] for r in results},
                   key=lambda n: ({"lstm-xp": 0, "peer": 1, "floor": 2}.get(
                       next(r["kind"] for r in results if r["contender"] == n), 3), n))
    colour = {"lstm-xp": "tab:blue", "peer": "tab:orange", "floor": "tab:gray"}
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 0.42 * len(names) * rows + 1.5),
                             squeeze=False)
    for ax, shape in zip(axes.flat, shapes, strict=False):
        here = {r["contender"]: r for r in results if tuple(r["shape"]) == shape}
        order = [n for n in names if n in here]
        speeds = [here[n]["sequences_per_s"] for n in order]
        ax.barh(range(len(order)), speeds,
                color=[colour.get(here[n]["kind"], "tab:green") for n in order])
        ax.set_yticks(range(len(order)), order, fontsize=7)
        ax.invert_yaxis()
        for k, n in enumerate(order):
            ref = _peer_for(here[n], _TORCH[1] if "train" in n else _TORCH[0],
                            list(here.values()))
            label = "" if ref is None else f" {ref['median_s'] / here[n]['median_s']:.2f}x"
            ax.text(speeds[k], k, label, va="center", fontsize=7)
        ax.set_xlim(0, max(speeds) * 1.2)  # linear from 0: bar lengths compare as ratios
        ax.set_title(f"(B, T, I, H) = {shape}", fontsize=9)
        ax.set_xlabel("sequences / s (labels: x torch.nn.LSTM on the same device)", fontsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(shapes):]:
        ax.axis("off")
    fig.suptitle(f"lstm-xp bench, {report['config']['dtype']} "
                 f"({report['config'].get('mode', 'forward')}); blue: lstm-xp, orange: peers, "
                 "grey: GEMM floor", fontsize=9)
    fig.tight_layout()
    write_atomic(path, write=lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return None


def write_all(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md",
             "png": out_dir / "bench.png"}
    write_atomic(paths["json"], json.dumps(report, indent=2).encode("utf-8"))
    write_atomic(paths["markdown"], (markdown(report) + "\n").encode("utf-8"))
    why = plot(report, paths["png"])
    if why is not None:
        report.setdefault("notes", []).append(f"no plot: {why}")
        del paths["png"]
    return paths


def _sampling(config: dict[str, Any]) -> str:
    """How each cell's median was taken, in words."""
    rounds = int(config.get("rounds", 1))
    # Runs before warmup_s was a setting warmed up with calls alone.
    warm = config.get("warmup_s", 0.0)
    lasting = f", lasting {1e3 * warm:.0f} ms or more" if warm else ""
    if rounds <= 1:
        return f"median of up to {config['repeats']} runs after 2 warm-ups{lasting}"
    share = repeats_a_round(int(config["repeats"]), rounds)
    return (f"median of up to {share * rounds} runs, {share} in each of {rounds} rounds in "
            "which the contenders take turns at each shape (2 warm-ups in a contender's "
            f"first turn at a shape, 1 in each later one{lasting})")
