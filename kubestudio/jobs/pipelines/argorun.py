"""Pipeline runs that Argo Workflows runs: made as a Workflow, followed by one watch, recorded as ours.

Where the jobs backend is a cluster that serves Argo's Workflow (found by discovery, and granted to
the service's account), a run whose tasks all fit (:func:`.argo.check_fits`) is one Workflow; the
service keeps what a user sees the same: each task's state, attempts, times and message come from
the Workflow's nodes, its log from its pod, the run's end from the Workflow's phase. Cancel sets
``spec.shutdown: Terminate``; forget deletes the Workflow (its pods go with it, by owner). All of
the service's Workflows are watched by one reflector, each change waking the run it belongs to.
"""

import asyncio

from ... import kube
from ..spec import SpecError
from .argo import ARGO, COMPONENT, GROUP, PLURAL, RUN_LABEL, VERSION, ArgoRefused, check_fits, workflow, workflow_name


class ArgoRunner:
    def __init__(self, manager):
        self.manager = manager
        self._served = None  # (when, whether) Argo's Workflow was found by discovery
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
        loop = asyncio.get_running_loop()
        if self._served is None or loop.time() - self._served[0] > 60:
            kinds = {"Workflow": (ARGO, PLURAL)}
            found = await kube.served(self.backend._api_client, kinds)
            if found:  # served, but not granted to our account (the chart's operators.argo): as missing
                found -= await kube.forbidden(self.backend._api_client, self.backend.namespace, kinds)
            self._served = (loop.time(), "Workflow" in found)
        return self._served[1]

    async def plan(self, spec, caller, run_id, params, scheduled, rerun):
        """The Workflow to make for this run, or None where the service runs the DAG itself;
        SpecError when the spec asks for Argo and cannot have it."""
        if spec.backend == "kubestudio":
            return None
        served = await self.served()
        if not served:
            if spec.backend == "argo":
                raise SpecError(
                    "backend: this hub's jobs run where Argo Workflows (argoproj.io/v1alpha1 Workflow) is not "
                    "served, or not granted to the hub (the chart's operators.argo); use auto or kubestudio",
                    409,
                )
            return None
        try:
            if rerun:
                raise ArgoRefused("rerun: a rerun keeps earlier results, which the service runs around")
            return await self.build(spec, caller, run_id, params, scheduled)
        except ArgoRefused as e:
            if spec.backend == "argo":
                raise SpecError(f"{e} (backend: argo); use auto or kubestudio") from None
            self.log.info("pipeline %s run %s: the service runs it (%s)", spec.name, run_id, e)
            return None

    async def build(self, spec, caller, run_id, params, scheduled):
        """The Workflow of a run (ArgoRefused naming what cannot be one)."""
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
            body = manager._job(spec, task, run_id, 0, context)
            run = await manager.jobs.check(caller, body)
            kinds[name], jobs[name] = backend.object_of(run)
            if task.when:
                filled = fill(task.when, context, f"tasks.{name}.when")
                evaluate_when(task.when, context, f"tasks.{name}.when")  # ours reads it: Argo's will
                whens[name] = filled
        check_fits(spec, kinds)
        body = workflow(spec, run_id, backend.namespace, user_slug(caller["name"]), jobs, whens)
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
            run_id = ((obj or {}).get("metadata", {}).get("labels") or {}).get(RUN_LABEL)
            for candidate, event in list(manager.wake.items()):
                if candidate == run_id or (obj is None and name.endswith(candidate)):
                    event.set()

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

    def get(self, spec, run_id):
        return self.workflows.get(workflow_name(spec, run_id)) if self.workflows is not None else None

    async def cancel(self, spec, run_id):
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.backend.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.backend.namespace,
                PLURAL,
                workflow_name(spec, run_id),
                {"spec": {"shutdown": "Terminate"}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def delete(self, spec, run_id):
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.backend.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.backend.namespace, PLURAL, workflow_name(spec, run_id)
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
