"""``python -m reprogls``: the same as the ``reprogls`` console script."""

import sys

from .cli import main

sys.exit(main())
