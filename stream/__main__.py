"""``python -m stream``: the streamrank command."""

import sys

from stream.tools.cli import main

sys.exit(main())
