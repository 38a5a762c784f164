"""Run the decision service under uvicorn (chosen by measurement: README "Decision service").

One worker runs in this process. Several run as spawned processes sharing one listening socket under a
supervisor (uvicorn's, which restarts a worker that dies) whose SIGHUP handling is changed: uvicorn replaces its
workers on SIGHUP, which would throw away a good pack when the new one is broken and start workers that cannot
decide; here every worker receives the SIGHUP and reloads in place, atomically, keeping its pack if the new one
fails. SIGTERM and SIGINT stop accepting, drain in-flight requests and flush the decision log (each worker's
lifespan shutdown) before the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from dataclasses import replace

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from .settings import SETTINGS_ENV, Settings

log = logging.getLogger("policy_engine.service")
#: seconds in-flight requests get to finish after SIGTERM
DRAIN_SECONDS = 30


class _ReloadingSupervisor(Multiprocess):
    def handle_hup(self) -> None:
        log.info("SIGHUP: every worker reloads the pack")
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, signal.SIGHUP)


def _log_config(level: str) -> dict:
    config = {**uvicorn.config.LOGGING_CONFIG}
    config["loggers"] = {**config["loggers"], "policy_engine.service": {
        "handlers": ["default"], "level": level.upper(), "propagate": False}}
    return config


def serve(settings: Settings, host: str, port: int, workers: int, log_level: str = "info") -> bool:
    """Serve until SIGTERM/SIGINT. With ``workers > 1`` the supervisor runs here and the workers are children.
    False if the service could not start (the reason is in the log)."""
    if workers > 1:
        settings = replace(settings, supervisor=os.getpid())
    os.environ[SETTINGS_ENV] = settings.to_env()
    config = uvicorn.Config("policy_engine.service.app:create_app", factory=True, host=host, port=port,
                            workers=workers, loop="uvloop", http="httptools", lifespan="on",
                            timeout_graceful_shutdown=DRAIN_SECONDS, log_config=_log_config(log_level),
                            log_level=log_level, access_log=False, server_header=False)
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        return server.started
    # each worker counts its metrics in files here; /metrics on any worker adds them up (see .metrics)
    with tempfile.TemporaryDirectory(prefix="policy-engine-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        socket = config.bind_socket()
        supervisor = _ReloadingSupervisor(config, sockets=[socket])
        supervisor.run()
        return all(p.exitcode != STARTUP_FAILURE for p in supervisor.processes)
