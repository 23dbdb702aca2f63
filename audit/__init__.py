"""imgaudit: audit image datasets for bias and measure how models trained on them generalize.

Import the parts you need::

    from audit.rundir import RunDir
    from audit import metrics          # GroupReport and friends
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
