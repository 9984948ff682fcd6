"""``python -m stream``: the streamrank command."""

import sys

from stream.cli import main

sys.exit(main())
