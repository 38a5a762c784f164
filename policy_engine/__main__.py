"""``python -m policy_engine``: the ``policy-engine`` command, for where the console script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
