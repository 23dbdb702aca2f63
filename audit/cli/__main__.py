"""``python -m audit.cli`` works like ``audit`` (and ``python -m audit``)."""

import sys

from audit.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
