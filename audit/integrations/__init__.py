"""Integrations with other tools, each importing its optional dependency only when used.

* :mod:`audit.integrations.fiftyone`: export a run to a FiftyOne dataset (``audit fiftyone export RUN``); the
  reader ``--format fiftyone --dataset NAME`` lives in :mod:`audit.readers.fiftyone`.
"""
