"""Slice discovery confirmed on held-out data (issue 20; docs/slices.md).

The held-out predictions of each (model, protocol, fold, seed) are dealt into a discovery half and a confirmation
half. On the first, error-aware clustering of penultimate-layer embeddings (:mod:`audit.slices.discover`) proposes
regions where the model errs; on the second, each region's accuracy is compared with the rest's, with a bootstrap
interval, a p-value and a BH q-value (:mod:`audit.slices.confirm`). Embeddings are captured during inference by
:mod:`audit.slices.embed`; :func:`run_slices` writes ``RUN/slices/``.
"""

from audit.slices.core import SliceConfig
from audit.slices.stage import run_slices

__all__ = ["SliceConfig", "run_slices"]
