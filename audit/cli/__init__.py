"""The ``audit`` command line: one thin command per stage, no logic here.

Exit codes: 0 ok, 1 policy failed (``audit check``) or a stage failed, 2 usage or input error
(one-line message, no traceback unless ``--debug``).

Modules: ``base`` (the app, global options, error handling), ``options`` (shared options), ``jsonout`` (``--json``),
``data`` (profile, run), ``model`` (train, metrics, slices, mitigate), ``results`` (report, check, init-policy,
findings), ``tools`` (dashboard, demo, models, formats, fiftyone export) and ``entry`` (``main``). Commands are
listed in ``audit --help`` in the order these modules are imported here.
"""

from audit.cli.base import DemoTask, Engine, Protocol, Task, app, fiftyone_app, handle_errors
from audit.cli.data import profile, run
from audit.cli.entry import hoist_global_flags, main
from audit.cli.model import metrics, mitigate, slices, train
from audit.cli.results import check, findings, init_policy, report
from audit.cli.tools import dashboard, demo, fiftyone_export, formats, models

__all__ = [
    "app", "main", "hoist_global_flags", "handle_errors", "fiftyone_app", "Task", "DemoTask", "Protocol", "Engine",
    "profile", "run", "train", "metrics", "slices", "mitigate", "report", "check", "init_policy", "findings",
    "dashboard", "demo", "models", "formats", "fiftyone_export",
]
