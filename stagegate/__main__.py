"""`python -m stagegate ...`: see `stagegate.cli`."""

import sys

from stagegate.cli import main

sys.exit(main())
