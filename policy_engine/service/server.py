"""Run the decision service under granian (chosen by measurement over uvicorn: README "Decision service").

granian always runs a supervisor process and its workers as children sharing one listening socket. Its own
SIGHUP handling replaces the workers, which would throw away a good pack when the new one is broken and start
workers that cannot decide; here the supervisor passes SIGHUP on to every worker instead, and each reloads in
place, atomically, keeping its pack if the new one fails (:meth:`.app.Service.reload`). SIGTERM and SIGINT stop
accepting, let in-flight requests finish and flush the decision log (each worker's lifespan shutdown).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from dataclasses import replace

from granian.constants import Interfaces, Loops
from granian.log import LOGGING_CONFIG, LogLevels
from granian.server import Server

from .settings import SETTINGS_ENV, Settings

log = logging.getLogger("policy_engine.service")
#: seconds in-flight requests get to finish after SIGTERM before a worker is killed
DRAIN_SECONDS = 30


class _ReloadingServer(Server):
    def _reload(self, spawn_target: object, target_loader: object) -> None:
        self.reload_signal = False
        self.main_loop_interrupt.clear()
        log.info("SIGHUP: every worker reloads the pack")
        for worker in self.wrks:
            if worker.inner.is_alive() and worker.inner.pid is not None:
                os.kill(worker.inner.pid, signal.SIGHUP)


def _log_config(level: str) -> dict:
    """granian's logging with the service's own logger beside it (every worker configures it on start)."""
    return {"loggers": {**LOGGING_CONFIG["loggers"], "policy_engine.service": {
        "handlers": ["console"], "level": level.upper(), "propagate": False}}}


def serve(settings: Settings, host: str, port: int, workers: int, log_level: str = "info") -> bool:
    """Serve until SIGTERM/SIGINT; False if the workers could not start (the reason is in the log)."""
    settings = replace(settings, supervisor=os.getpid())
    os.environ[SETTINGS_ENV] = settings.to_env()
    # each worker counts its metrics in files here; /metrics on any worker adds them up (see .metrics)
    with tempfile.TemporaryDirectory(prefix="policy-engine-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        server = _ReloadingServer("policy_engine.service.app:create_app", address=host, port=port,
                                  interface=Interfaces.ASGI, workers=workers, loop=Loops.uvloop, factory=True,
                                  log_level=LogLevels(log_level), log_dictconfig=_log_config(log_level),
                                  workers_kill_timeout=DRAIN_SECONDS,
                                  respawn_failed_workers=True)
        try:
            server.serve()
        except SystemExit as exc:
            return not exc.code
    return True
