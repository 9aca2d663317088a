"""``python -m lstm_xp``: the same as the ``lstm-xp`` command."""

from .cli import main

raise SystemExit(main())
