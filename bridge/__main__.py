"""`python -m bridge` is the `mdns-gateway` command."""

import sys

from .cli import main

sys.exit(main())
