"""Integrations with other tools, each importing its optional dependency only when used.

* :mod:`audit.integrations.fiftyone`: export a run to a FiftyOne dataset (``audit fiftyone export RUN``); the
  reader ``--format fiftyone --dataset NAME`` lives in :mod:`audit.readers.fiftyone`.
* :mod:`audit.integrations.ray_engine`: Ray Data pipelines over the manifest (``--engine ray``) for the profile's
  image scan and, through :mod:`audit.train.ray_infer`, model inference on an actor pool.
"""
