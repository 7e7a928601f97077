"""Allows ``python -m dualstack_operator``."""

import sys

from dualstack_operator.cli import main

sys.exit(main())
