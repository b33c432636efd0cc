"""``python -m gagnet``: the same as the ``gagnet`` command."""
import sys

from .cli import main

sys.exit(main())
