"""``python -m prmkit`` (and ``torchrun -m prmkit``): the same as the ``prmkit`` command."""

import sys

from prmkit.cli import main

sys.exit(main())
