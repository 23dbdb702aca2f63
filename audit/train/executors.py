"""How folds are executed. :class:`LocalExecutor` runs them in this process; the Ray executors
(:mod:`audit.train.ray_infer`, :mod:`audit.train.ray_folds`) and DDP ranks (:mod:`audit.train.ddp`) supply the
same hooks (``build_cache``, ``fit``, ``predict``, ``describe``, ``is_main``) to shard the work."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Folds trained and predicted in this process, one after the other."""

    name = "local"
    is_main = True

    def describe(self) -> dict:
        return {"engine": "local"}

    def build_cache(self, build: Callable, *args, **kwargs):
        return build(*args, **kwargs)

    def fit(self, *args, **kwargs):
        from audit.train.trainer import fit

        return fit(*args, **kwargs)

    def predict(self, model, src, rows, cfg, capture=None, **_):
        from audit.train.trainer import predict

        return predict(model, src, rows, cfg, capture=capture)

