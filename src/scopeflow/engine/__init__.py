"""Layer 3 engine: runs any pipeline DAG on Dask with checkpoints, retries and events.

The engine knows pipelines only as :class:`Pipeline` objects handed to it; it never imports
``scopeflow.steps`` or ``scopeflow.pipelines``.
"""

from scopeflow.engine.api import DEFAULT_RETRIES, load_summary, run_pipeline
from scopeflow.engine.clusters import ClusterSpec, backend_for, start_mpi_cluster
from scopeflow.engine.context import UnitContext
from scopeflow.engine.dag import ONCE, Dependency, Node, Pipeline, Step, all_units, per_unit
from scopeflow.engine.events import EventLog, iter_events, read_events
from scopeflow.engine.progress import ProgressSink, RichProgress
from scopeflow.engine.rundir import RunDir
from scopeflow.engine.runner import RunOutcome
from scopeflow.engine.unit import UnitError

__all__ = [
    "DEFAULT_RETRIES",
    "ONCE",
    "ClusterSpec",
    "Dependency",
    "EventLog",
    "Node",
    "Pipeline",
    "ProgressSink",
    "RichProgress",
    "RunDir",
    "RunOutcome",
    "Step",
    "UnitContext",
    "UnitError",
    "all_units",
    "backend_for",
    "iter_events",
    "load_summary",
    "per_unit",
    "read_events",
    "run_pipeline",
    "start_mpi_cluster",
]
