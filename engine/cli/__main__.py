"""``python -m cadenza.engine.cli``: the ``cadenza`` command."""

import sys

from cadenza.engine.cli import main

sys.exit(main())
