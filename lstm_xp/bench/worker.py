"""One benchmark contender in its own process: ``python -m lstm_xp.bench.worker``.

Reads ``{"spec", "config", "start", "total"}`` as JSON on stdin, writes progress to stderr and
the measurements (or the reason it cannot run) as JSON on stdout.
"""

from __future__ import annotations

import json
import sys

from .runner import BenchConfig, measure


def main() -> None:
    request = json.load(sys.stdin)
    config = BenchConfig(**{**request["config"],
                            "shapes": [tuple(s) for s in request["config"]["shapes"]]})

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    got = measure(request["spec"], config, log, [request["start"]], request["total"])
    json.dump(got if isinstance(got, str) else [m.as_dict() for m in got], sys.stdout)


if __name__ == "__main__":
    main()
