"""``python -m responder``: see :mod:`responder.cli`."""

from responder.cli import main

raise SystemExit(main())
