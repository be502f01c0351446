"""Pipeline runs that Argo Workflows runs: made as a Workflow, followed by one watch, recorded as ours.

Where the jobs backend is a cluster that serves Argo's Workflow (found by discovery, and granted to
the service's account), a run whose tasks all fit (:func:`.argo.check_fits`) is one Workflow; the
service keeps what a user sees the same: each task's state, attempts, times and message come from
the Workflow's nodes, its log from its pod, the run's end from the Workflow's phase. Cancel sets
``spec.shutdown: Terminate``; forget deletes the Workflow (its pods go with it, by owner). All of
the service's Workflows are watched by one reflector, each change waking the run it belongs to.
"""

from ... import kube
from ..spec import SpecError
from .argo import (
    ARGO,
    COMPONENT,
    CRON_PLURAL,
    GROUP,
    PLURAL,
    SCHEDULE_LABEL,
    VERSION,
    ArgoRefused,
    check_fits,
    check_schedule_fits,
    cron_name,
    cron_workflow,
    for_any_run,
    workflow,
)


class ArgoRunner:
    def __init__(self, manager):
        self.manager = manager
        self._granted = kube.GrantedKind("Workflow", ARGO, PLURAL)  # the chart's operators grant it
        self._cron_granted = kube.GrantedKind("CronWorkflow", ARGO, CRON_PLURAL)
        self.workflows = None  # the reflector of our Workflows, started with the first Argo run

    @property
    def backend(self):
        return self.manager.jobs.backend

    @property
    def log(self):
        return self.manager.log

    async def served(self):
        """Whether the jobs backend is a cluster serving Argo's Workflow to us (looked up once a minute)."""
        if not hasattr(self.backend, "custom"):
            return False
        return await self._granted(self.backend._api_client, self.backend.namespace)

    async def _usable(self, spec):
        """Whether Argo may run ``spec``'s runs: not kept in the service (``backend: kubestudio``),
        and Argo's Workflow served and granted here; SpecError where the spec insists on an Argo
        that is not there."""
        if spec.backend == "kubestudio":
            return False
        if await self.served():
            return True
        if spec.backend == "argo":
            raise SpecError(
                "backend: this hub's jobs run where Argo Workflows (argoproj.io/v1alpha1 Workflow) is not "
                "served, or not granted to the hub (the chart's operators.argo); use auto or kubestudio",
                409,
            )
        return False

    async def plan(self, spec, caller, run_id, params, scheduled, checked, rerun):
        """The Workflow to make for this run, or None where the service runs the DAG itself
        (``checked``: {task: its job as the manager checked it}); SpecError when the spec asks for
        Argo and cannot have it."""
        if not await self._usable(spec):
            return None
        try:
            if rerun:
                raise ArgoRefused("rerun: a rerun keeps earlier results, which the service runs around")
            return self.build(spec, caller, run_id, params, scheduled, checked)
        except ArgoRefused as e:
            if spec.backend == "argo":
                raise SpecError(f"{e} (backend: argo); use auto or kubestudio") from None
            self.log.info("pipeline %s run %s: the service runs it (%s)", spec.name, run_id, e)
            return None

    async def plan_schedule(self, spec, caller, params, schedule_id, checked):
        """The CronWorkflow that fires schedule ``schedule_id``, or None where the service fires it
        (``checked`` as for :meth:`plan`); SpecError when the spec asks for Argo and cannot have it.
        Its Workflows are named ``ks-<schedule id>-<time>``, which is each run's id, and labelled
        with the schedule, so that the one watch finds each and the service records it."""
        if not await self._usable(spec):
            return None
        try:
            if not await self._cron_granted(self.backend._api_client, self.backend.namespace):
                raise ArgoRefused("schedule: Argo's CronWorkflow is not served or not granted to the hub")
            check_schedule_fits(spec)
            placeholder = "0" * 12
            body = for_any_run(self.build(spec, caller, placeholder, params, None, checked), placeholder)
        except ArgoRefused as e:
            if spec.backend == "argo":
                raise SpecError(f"{e} (backend: argo); use auto or kubestudio", 409) from None
            self.log.info("pipeline %s schedule %s: the service fires it (%s)", spec.name, schedule_id, e)
            return None
        labels = {**body["metadata"]["labels"], SCHEDULE_LABEL: schedule_id}
        body["metadata"]["namespace"] = self.backend.namespace
        return cron_workflow(spec, body, name=cron_name(schedule_id), workflow_labels=labels)

    async def put_cron(self, body):
        """Make (or replace) a schedule's CronWorkflow."""
        from kubernetes_asyncio.client.rest import ApiException

        backend, name = self.backend, body["metadata"]["name"]
        await self.follow()
        try:
            await kube.retrying(
                lambda: backend.custom.create_namespaced_custom_object(
                    GROUP, VERSION, backend.namespace, CRON_PLURAL, body
                )
            )
            return
        except ApiException as e:
            if e.status != 409:
                raise SpecError(f"Argo's CronWorkflow was refused: {e.status} {kube.api_message(e)}", 409) from None
        current = await backend.custom.get_namespaced_custom_object(
            GROUP, VERSION, backend.namespace, CRON_PLURAL, name
        )
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        await backend.custom.replace_namespaced_custom_object(
            GROUP, VERSION, backend.namespace, CRON_PLURAL, name, body
        )

    async def delete_cron(self, schedule_id):
        """Remove a schedule's CronWorkflow; the Workflows it made (runs) stay."""
        await self._delete(CRON_PLURAL, cron_name(schedule_id), propagation_policy="Orphan")

    def build(self, spec, caller, run_id, params, scheduled, checked):
        """The Workflow of a run whose jobs were checked (ArgoRefused naming what cannot be one)."""
        from ...spawner.storage import user_slug
        from .spec import evaluate_when, fill

        manager, backend = self.manager, self.backend
        base = {"run": run_id, **{f"params.{k}": v for k, v in params.items()}}
        outputs = {t: fill(spec.tasks[t].outputs, base, t) for t in spec.tasks}
        jobs, kinds, whens = {}, {}, {}
        for name, task in spec.tasks.items():
            if task.kind != "job":
                raise ArgoRefused(f"tasks.{name}.{task.kind}: an Argo Workflow runs jobs only")
            context = manager._context(spec, run_id, params, name, outputs, scheduled)
            kinds[name], jobs[name] = backend.object_of(checked[name])
            if task.when:
                filled = fill(task.when, context, f"tasks.{name}.when")
                evaluate_when(task.when, context, f"tasks.{name}.when")  # ours reads it: Argo's will
                whens[name] = filled
        check_fits(spec, kinds)
        executor = manager.config.argo_executor_service_account
        body = workflow(spec, run_id, backend.namespace, user_slug(caller["name"]), jobs, whens, executor)
        limit = manager.jobs.config.max_running_jobs_per_user  # Argo runs them: our per-user limit holds
        body["spec"]["parallelism"] = min(body["spec"].get("parallelism") or limit, limit)
        return body

    async def create(self, body):
        from kubernetes_asyncio.client.rest import ApiException

        backend = self.backend
        await self.follow()
        try:
            await kube.retrying(
                lambda: backend.custom.create_namespaced_custom_object(GROUP, VERSION, backend.namespace, PLURAL, body)
            )
        except ApiException as e:
            if e.status != 409:
                raise SpecError(f"Argo's Workflow was refused: {e.status} {kube.api_message(e)}", 409) from None

    async def follow(self):
        """Start the one watch of the service's Workflows (once)."""
        if self.workflows is not None:
            return
        manager = self.manager

        def changed(name, obj):
            for candidate, event in list(manager.wake.items()):  # a run's Workflow: <pipeline>-<id>, or <id>
                if name == candidate or name.endswith("-" + candidate):
                    event.set()
            labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
            if SCHEDULE_LABEL in labels and name not in manager.wake:  # a run a schedule's CronWorkflow made
                manager.adopt(obj)

        self.workflows = kube.Reflector.custom(
            self.backend.custom,
            ARGO,
            PLURAL,
            self.backend.namespace,
            kube.selector(kube.owned_labels(COMPONENT)),
            self.log,
            on_change=changed,
        )
        await self.workflows.start()

    async def stop(self):
        if self.workflows is not None:
            await self.workflows.stop()
            self.workflows = None

    def get(self, name):
        """The Workflow ``name`` as the watch last saw it (None: not there, or not watched yet)."""
        return self.workflows.get(name) if self.workflows is not None else None

    async def cancel(self, name):
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.backend.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.backend.namespace,
                PLURAL,
                name,
                {"spec": {"shutdown": "Terminate"}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def delete(self, name):
        """Delete the Workflow ``name`` (its pods go with it, by owner)."""
        await self._delete(PLURAL, name)

    async def _delete(self, plural, name, **options):
        """Delete one of our Argo objects; one already gone is fine."""
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.backend.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.backend.namespace, plural, name, **options
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def pod_log(self, pod):
        from kubernetes_asyncio.client.rest import ApiException

        try:
            return await self.backend.log_core.read_namespaced_pod_log(pod, self.backend.namespace, container="main")
        except ApiException as e:
            return f"(no log of pod {pod}: {e.status} {kube.api_message(e)})\n"
