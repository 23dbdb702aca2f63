"""``audit dashboard RUN``: start the Streamlit app on a run directory (or a folder of runs).

The app lives in ``dashboards/app.py`` in a source checkout and in ``audit/_dashboards/app.py`` in an
installed wheel (pyproject force-includes ``dashboards/`` there). Streamlit is an optional extra, imported
only to check that it is installed.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

from audit.errors import UsageError

__all__ = ["launch", "find_app", "streamlit_command"]

_MSG_NO_STREAMLIT = "the dashboard needs streamlit, which is not installed: pip install 'imgaudit[dashboard]'"


def find_app() -> Path:
    """Path of the dashboard's ``app.py`` (installed wheel first, then a source checkout)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_dashboards" / "app.py", here.parent / "dashboards" / "app.py"):
        if cand.is_file():
            return cand
    raise UsageError(
        f"the dashboard app is missing from this installation (looked in {here / '_dashboards'}); reinstall imgaudit"
    )


def streamlit_command(app: Path, run: Path, *, port: int, host: str) -> list[str]:
    """The ``python -m streamlit run`` command line for ``app`` on ``run``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",  # no "Deploy" button on a local audit
        "--",
        "--run",
        str(run),
    ]


def _check_port(host: str, port: int) -> None:
    """Fail early, in one line, when the port is taken (Streamlit would print a longer message)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except socket.gaierror:
            raise UsageError(f"--host {host!r} is not an address this machine can bind") from None
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another with --port") from None


def launch(run_dir: Path | str, *, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Start the dashboard on ``run_dir`` and block until it stops.

    Parameters
    ----------
    run_dir
        A run directory, or a folder holding run directories (the sidebar switches between them).
    port
        TCP port to listen on.
    host
        Address to bind; the default keeps the app on this machine only.

    Returns
    -------
    int
        Streamlit's exit code (0 after Ctrl+C).

    Raises
    ------
    UsageError
        The run directory is missing or not one, streamlit is not installed, or the port is unusable.
    """
    from audit.console import print_dashboard_address
    from audit.views import resolve_runs

    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    path = Path(run_dir).expanduser().resolve()
    resolve_runs(path)  # raises a one-line UsageError for a missing or non-run folder
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise UsageError(_MSG_NO_STREAMLIT) from None
    app = find_app()
    _check_port(host, int(port))
    shown = f"[{host}]" if ":" in host else host
    print_dashboard_address(path, f"http://{shown}:{port}")
    return _run_server(streamlit_command(app, path, port=int(port), host=host))


def _run_server(cmd: list[str]) -> int:
    """Run the streamlit server as a child and stop it with us: Ctrl+C, or a SIGTERM/SIGHUP from ``timeout``, a CI
    runner or a process supervisor is passed on to the server, which is waited for (never left orphaned)."""
    import signal

    proc = subprocess.Popen(cmd)
    caught: list[int] = []

    def forward(signum, _frame):
        caught.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl+C reaches the whole process group; make sure the server stops
                caught.append(signal.SIGINT)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0 if caught else rc
