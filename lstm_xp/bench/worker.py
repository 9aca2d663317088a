"""One benchmark contender in its own process: ``python -m lstm_xp.bench.worker``.

Reads ``{"spec", "config", "start", "total", "quiet"}`` as JSON on stdin, writes progress to
stderr (unless quiet: the parent draws a bar) and the measurements (or the reason it cannot
run) as JSON on stdout.
"""

from __future__ import annotations

import json
import sys

from .progress import Progress
from .runner import BenchConfig, measure


def main() -> None:
    request = json.load(sys.stdin)
    config = BenchConfig(**{**request["config"],
                            "shapes": [tuple(s) for s in request["config"]["shapes"]]})

    progress = Progress(request["total"], None if request.get("quiet") else sys.stderr,
                        done=request["start"], bar=False)
    got = measure(request["spec"], config, progress)
    json.dump(got if isinstance(got, str) else [m.as_dict() for m in got], sys.stdout)


if __name__ == "__main__":
    main()
