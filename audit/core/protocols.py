"""Evaluation protocols: the one list every stage, schema and page uses."""

from __future__ import annotations

__all__ = ["TRAIN_PROTOCOLS", "PROTOCOLS", "EXTERNAL", "TASKS", "ENGINES"]

#: protocols ``audit train`` runs: leave-one-domain-out, the given split, the domain-to-domain transfer matrix
TRAIN_PROTOCOLS: tuple[str, ...] = ("lodo", "split", "transfer")
#: predictions brought by the user (``audit metrics --predictions FILE``)
EXTERNAL = "external"
#: every protocol a prediction row may carry
PROTOCOLS: tuple[str, ...] = (*TRAIN_PROTOCOLS, EXTERNAL)
#: the tasks a run can have: image classification, semantic segmentation
TASKS: tuple[str, ...] = ("classify", "segment")
#: where the per-image work and training run: this machine, or a Ray cluster
ENGINES: tuple[str, ...] = ("local", "ray")
