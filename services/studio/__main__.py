"""``python -m services.studio``: see ``services.studio.cli``."""

import sys

from services.studio.cli import main

sys.exit(main())
