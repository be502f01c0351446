"""The jobs service: a JupyterHub managed service at ``/services/jobs/``.

Started by the hub (``python -m kubestudio.jobs --config <data_dir>/jobs-service.json``). Its
settings are traits of :class:`JobService` and of its backend (:class:`LocalJobBackend` on the
embedded default); admins set them as ``c.JobService.*`` in ``jupyterhub_config.py`` and the
hub's ``configure(c)`` hands them to the service in that file (:mod:`kubestudio.jobs.service`
declares what the service reads).
"""

import os

from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Integer, Type, Unicode, default

from ..names import JOBS_SERVICE as SERVICE_NAME
from ..services.app import ServiceApp
from ..services.events import BulkWriteLimiter
from ..services.hubapi import HubAPI
from ..services.proxy import UpstreamPool
from ..services.store import Store
from ..services.web import (
    HealthHandler,
    OpenAPIHandler,
    oauth_routes,
    oauth_settings,
    service_prefix,
    static_routes,
)
from . import handlers
from .experiments import handlers as experiment_handlers
from .experiments.manager import ExperimentManager
from .models import MIGRATIONS, VERSION_TABLE, Base
from .openapi import openapi
from .pipelines import handlers as pipeline_handlers
from .pipelines.manager import PipelineManager
from .service import JOBS
from .serving import handlers as serving_handlers
from .serving.backends.base import ServingBackend
from .serving.manager import ServingManager
from .training import handlers as training_handlers
from .training.backends.base import JobBackend
from .training.backends.local import LocalJobBackend
from .training.manager import JobManager


class JobService(ServiceApp):
    name = "kubestudio-jobs"
    description = "KubeStudio jobs service"

    backend_class = Type(
        LocalJobBackend,
        klass=JobBackend,
        config=True,
        help="""What runs jobs: kubestudio.jobs.training.backends.local.LocalJobBackend (the
        embedded default: local processes in the user's workspace) or
        kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend (pods, and the training
        operators the cluster has).""",
    )
    serving_backend_class = Type(
        None,
        klass=ServingBackend,
        allow_none=True,
        config=True,
        help="""What runs servings' model runtimes, beside the jobs backend whose folders, GPUs or
        cluster it shares. Defaults to the one backend_class names (its serving_backend): local
        processes for LocalJobBackend, Deployments or KServe InferenceServices for
        KubernetesJobBackend. None (a jobs backend that names none): no servings; api/servings
        answers 409 saying so.""",
    )

    @default("serving_backend_class")
    def _default_serving_backend_class(self):
        return self.backend_class.serving_backend

    max_running_jobs = Integer(
        4, config=True, help="Jobs that may run at once, for all users together; more wait in the queue."
    )
    max_running_jobs_per_user = Integer(
        2, config=True, help="Jobs one user may have running at once; more wait in the queue."
    )
    max_nodes = Integer(16, config=True, help="Largest `nodes` a job may ask for.")
    max_procs_per_node = Integer(16, config=True, help="Largest `procs_per_node` a job may ask for.")
    max_runtime_limit = Integer(
        7 * 86400,
        config=True,
        help="Largest `max_runtime` a job may ask for, in seconds (jobs without one are not limited).",
    )
    max_retries = Integer(10, config=True, help="Largest `retries` a job may ask for.")
    max_log_bytes = Integer(
        10 * 1024 * 1024,
        config=True,
        help="""Largest log kept per job (characters, every rank together). Past it, lines are left
        out, except the last 100, which close the log after a note saying how many were left out;
        the job goes on.""",
    )
    stop_jobs_on_exit = Bool(
        True,
        config=True,
        help="""Stop running jobs when the service stops (Ctrl-C on the hub leaves nothing running).
        Off: jobs run on and the next start of the service follows them again. configure() turns it
        off with KubeStudio.keep_servers_running.""",
    )
    max_serving_replicas = Integer(
        4, config=True, help="Largest `replicas` a serving may ask for (Kubernetes; a local serving runs one)."
    )
    max_predict_bytes = Integer(
        16 * 1024 * 1024, config=True, help="Largest request body sent to a serving (413 past it)."
    )
    max_serving_log_bytes = Integer(
        64 * 1024, config=True, help="How much of a serving runtime's log `logs` returns (its end)."
    )
    keepalive_seconds = Integer(15, config=True, help="Seconds between keepalive comments on log event streams.")
    max_trials_per_experiment = Integer(1000, config=True, help="Largest `max_trials` an experiment may ask for.")
    max_parallel_trials = Integer(
        16,
        config=True,
        help="""Largest `parallel_trials` an experiment may ask for. Its trials are jobs: they also
        wait in the jobs' queue (max_running_jobs_per_user) like any other.""",
    )
    max_running_pipelines_per_user = Integer(
        10,
        config=True,
        help="""Pipeline runs one user may have going at once; one more is refused (409) until one
        ends. Their tasks' jobs also count against max_running_jobs_per_user, as any job.""",
    )
    katib_db_manager = Unicode(
        "katib-db-manager.kubeflow:6789",
        config=True,
        help="""host:port of Katib's DB manager (gRPC), where the service pushes the reports of the
        trials of experiments Katib runs (``backend: katib``, or ``auto`` where the cluster serves
        Katib's Experiment). Katib's trial controller reads them from there.""",
    )
    argo_executor_service_account = Unicode(
        "",
        config=True,
        help="""Service account of Argo's executor (the init and wait containers) in the Workflows
        of pipeline runs: the one account there with a token, which Argo's executor needs to report
        each step's result (``workflowtaskresults``: create, patch); the task's own container
        gets none. The Helm chart makes one and sets it where ``operators.argo`` is on. Empty:
        the Workflow names none, and Argo's workflow defaults decide.""",
    )
    max_running_experiments_per_user = Integer(
        4, config=True, help="Experiments one user may have running at once; more are refused (409)."
    )
    trial_report_url = Unicode(
        "",
        config=True,
        help="""Where a trial's processes send their reports: this service's address as they reach
        it, up to and including `/services/jobs/`. Empty: the address the hub gives the service
        (JUPYTERHUB_SERVICE_URL), which local jobs reach on the loopback; on Kubernetes, the
        jobs service's in-cluster address (the Helm chart sets it).""",
    )

    store_name = JOBS.store

    def make_app(self):
        prefix = service_prefix(SERVICE_NAME)
        self.upstream = UpstreamPool()  # to the backends the service forwards to; closed when it stops
        self.store = Store(self.db_url, Base, migrations=MIGRATIONS, version_table=VERSION_TABLE)
        self.backend = self.backend_class(parent=self, log=self.log)
        hub = HubAPI(os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", ""))
        self.manager = JobManager(self, self.store, self.backend, hub, self.log)
        self.servings = None
        if self.serving_backend_class is not None:
            backend = self.serving_backend_class(self.backend, parent=self, log=self.log)
            self.servings = ServingManager(self, self.store, backend, hub, self.log, prefix, jobs=self.manager)
        report_url = self.trial_report_url or (os.environ.get("JUPYTERHUB_SERVICE_URL", "").rstrip("/") + prefix)
        self.experiments = ExperimentManager(
            self,
            self.store,
            self.manager,
            self.log,
            url_path_join(report_url, "api/experiments/"),
            katib_db_manager=self.katib_db_manager,
        )
        self.pipelines = PipelineManager(
            self, self.store, self.manager, self.log, experiments=self.experiments, servings=self.servings
        )
        api = url_path_join(prefix, "api")
        job = url_path_join(api, "jobs", r"([a-z0-9][-a-z0-9]{0,62})")  # an id, or one of your jobs' names
        serving = url_path_join(api, "servings", r"([0-9a-f]{1,32})")
        experiment = url_path_join(api, "experiments", r"([a-z0-9][-a-z0-9]{0,62})")  # an id, or a name
        # a run's id, or a pipeline's name (your newest run of it)
        pipeline_run = url_path_join(api, "pipelines", "runs", r"([a-z0-9][-a-z0-9]{0,62})")
        routes = (
            oauth_routes(prefix)
            + static_routes(prefix)
            + [
                (prefix, handlers.IndexHandler),
                (url_path_join(api, "jobs"), training_handlers.JobsHandler),
                (job, training_handlers.JobHandler),
                (url_path_join(job, "logs"), training_handlers.JobLogsHandler),
                (url_path_join(job, "events"), training_handlers.JobEventsHandler),
                (url_path_join(job, "rerun"), training_handlers.RerunHandler),
                (url_path_join(api, "runtimes"), training_handlers.RuntimesHandler),
                (url_path_join(api, "limits"), training_handlers.LimitsHandler),
                (url_path_join(api, "experiments"), experiment_handlers.ExperimentsHandler),
                (experiment, experiment_handlers.ExperimentHandler),
                (url_path_join(experiment, "trials"), experiment_handlers.TrialsHandler),
                (url_path_join(experiment, "trials", r"(\d{1,6})", "log"), experiment_handlers.TrialLogHandler),
                (
                    url_path_join(api, "experiments", r"([0-9a-f]{12})", "trials", r"(\d{1,6})", "report"),
                    experiment_handlers.ReportHandler,
                ),
                (  # a trial Katib made names itself: exp-<experiment id>-<Katib's suffix>
                    url_path_join(
                        api, "experiments", r"([0-9a-f]{12})", "katib", r"(exp-[0-9a-f]{12}-[a-z0-9]{1,16})", "report"
                    ),
                    experiment_handlers.ReportHandler,
                ),
                (url_path_join(api, "pipelines", "runs"), pipeline_handlers.RunsHandler),
                (url_path_join(api, "pipelines", "schedules"), pipeline_handlers.SchedulesHandler),
                (url_path_join(api, "pipelines", "export"), pipeline_handlers.ExportHandler),
                (
                    url_path_join(api, "pipelines", "schedules", r"([a-z0-9][-a-z0-9]{0,62})"),
                    pipeline_handlers.ScheduleHandler,
                ),
                (pipeline_run, pipeline_handlers.RunHandler),
                (url_path_join(pipeline_run, "rerun"), pipeline_handlers.RerunHandler),
                (
                    url_path_join(pipeline_run, "tasks", r"([a-z][-a-z0-9]{0,15})", "log"),
                    pipeline_handlers.TaskLogHandler,
                ),
                (url_path_join(api, "servings"), serving_handlers.ServingsHandler),
                (serving, serving_handlers.ServingHandler),
                (url_path_join(serving, "logs"), serving_handlers.ServingLogsHandler),
                (
                    url_path_join(prefix, "serve", r"([^/]+)", r"([a-z][-a-z0-9]*)") + r"/(.*)",
                    serving_handlers.PredictHandler,
                ),
                (url_path_join(api, "health"), HealthHandler),
                (url_path_join(api, "openapi.json"), OpenAPIHandler),
            ]
        )
        settings = oauth_settings(
            SERVICE_NAME,
            prefix,
            cookie_secret_file=self.cookie_secret_file,
            manager=self.manager,
            keepalive_seconds=self.keepalive_seconds,
            bulk_writes=BulkWriteLimiter(),
            openapi=openapi,
            servings=self.servings,
            experiments=self.experiments,
            pipelines=self.pipelines,
            max_predict_bytes=self.max_predict_bytes,
            upstream=self.upstream,
        )
        return web.Application(routes, **settings)

    async def started(self):
        await self.manager.start()
        await self.experiments.start()  # after the jobs: its trials' jobs are followed again first
        await self.pipelines.start()
        if self.servings is not None:  # after the jobs: their GPUs are restored first
            await self.servings.start()
        serving = self.servings.backend.name if self.servings is not None else "none"
        self.log.info("jobs service: backend %s, servings %s", self.backend.name, serving)

    async def stopping(self):
        if self.servings is not None:
            await self.servings.stop(self.stop_jobs_on_exit)
        await self.experiments.stop()
        await self.pipelines.stop()
        await self.manager.stop(self.stop_jobs_on_exit)
        await self.upstream.close()


def main(argv=None):
    app = JobService()
    app.initialize(argv)
    app.start()
