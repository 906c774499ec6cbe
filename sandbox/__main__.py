"""The sandbox CLI: python -m sandbox run ..."""

import sys

from sandbox.cli import main

sys.exit(main())
