"""One benchmark contender in its own process: ``python -m lstm_xp.bench.worker``, serving
its turns over stdin and stdout (:mod:`lstm_xp.bench.turns` has the protocol)."""

from __future__ import annotations

import os
import sys

from .turns import serve


def main() -> None:
    # The answers go out on the original stdout alone: anything else printed there (by a
    # library, from Python or C) goes to stderr instead of into the protocol.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with answers:
        serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
