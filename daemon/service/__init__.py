"""The long-running service: lifecycle (start-up order, signals, reload, drain), the job scheduler,
/healthz /readyz /metrics, and sd_notify. The pipeline plugs in through `Service.add_job`,
`add_readiness_check`, `add_shutdown_hook` and `mark_polled`, and feeds `Service.metrics`."""
from daemon.service.lifecycle import Plugin, Service, StartupError
from daemon.service.metrics import Registry, ServiceMetrics
from daemon.service.store import DatabaseProbe, StoreHandle

__all__ = ["DatabaseProbe", "Plugin", "Registry", "Service", "ServiceMetrics", "StartupError", "StoreHandle"]
