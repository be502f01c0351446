"""Experiments that Katib runs: made as a Katib Experiment, followed by watch, recorded as ours.

The service's own search (:mod:`.manager`) asks Optuna and submits jobs; here Katib does both, and
the service keeps what a user sees the same: each Katib Trial becomes a trial of the experiment
(numbered in the order Katib made them, with its parameters, state, value and reports), the best
trial, the experiment's end and its message. Cancel, ``max_runtime`` and forget delete the Katib
Experiment (its Trials and their jobs go with it, by owner). Reports from the trials are checked
here and pushed to Katib's DB manager, where Katib's trial controller reads them.
"""

import asyncio

from ... import kube
from ..models import CANCELLED, EXPERIMENT_RUNNING, FAILED, SUCCEEDED, Experiment, Trial, utcnow
from ..spec import SpecError
from .katib import (
    EXPERIMENT_LABEL,
    KATIB,
    TRIAL_NAME_PARAMETER,
    DBManager,
    KatibRefused,
    assignments,
    check_spec,
    experiment_manifest,
    experiment_name,
    experiment_outcome,
    params_template,
    placeholder,
    trial_state,
)
from .spec import format_value

EXPERIMENT_ID_LABEL = "kubestudio.io/experiment-id"


class KatibRunner:
    def __init__(self, manager, db_manager_address):
        self.manager = manager
        self.db = DBManager(db_manager_address)
        self._granted = kube.GrantedKind("Experiment", KATIB, "experiments")  # the chart's operators grant it

    @property
    def backend(self):
        return self.manager.jobs.backend

    @property
    def log(self):
        return self.manager.log

    async def served(self):
        """Whether the jobs backend is a cluster that serves Katib's Experiment (looked up once a minute)."""
        if not hasattr(self.backend, "custom"):
            return False
        return await self._granted(self.backend._api_client, self.backend.namespace)

    async def choose(self, spec, run):
        """``katib`` or ``kubestudio`` for ``spec`` (``run``: its first trial as the jobs manager
        checked it); SpecError when it asks for Katib and cannot have it."""
        if spec.backend == "kubestudio":
            return "kubestudio"
        served = await self.served()
        if spec.backend == "katib" and not served:
            raise SpecError(
                "backend: this hub's jobs run where Katib's Experiment (kubeflow.org/v1beta1) is not "
                "served, or not granted to the hub (the chart's operators.katib); use backend kubestudio "
                "(the service searches) or auto",
                409,
            )
        if not served:
            return "kubestudio"
        try:
            check_spec(spec, self.backend.object_of(run)[0])
        except KatibRefused as e:
            if spec.backend == "katib":
                raise SpecError(str(e)) from None
            return "kubestudio"  # auto: what Katib cannot run, the service searches
        return "katib"

    # ------------------------------------------------------------------ making it

    def trial_env(self, spec, experiment_id, token):
        from ..models import TRIAL_TOKEN_ENV

        trial_name = placeholder(TRIAL_NAME_PARAMETER)
        return {
            "KUBESTUDIO_TRIAL_PARAMS": params_template(spec.space),
            "KUBESTUDIO_TRIAL_NAME": trial_name,
            "KUBESTUDIO_EXPERIMENT": spec.name,
            "KUBESTUDIO_TRIAL_METRIC": spec.objective.metric,
            "KUBESTUDIO_TRIAL_URL": f"{self.manager.report_url}{experiment_id}/katib/{trial_name}/report",
            TRIAL_TOKEN_ENV: token,
        }

    async def create(self, caller, spec, experiment_id, token):
        """Make the Katib Experiment; SpecError (with the API's words) when it is refused."""
        from kubernetes_asyncio.client.rest import ApiException

        values = {p.name: placeholder(p.name) for p in spec.space}
        run = await self.manager.jobs.check(
            caller, spec.trial_job(0, values), service_env=self.trial_env(spec, experiment_id, token)
        )
        backend = self.backend
        kind, job = backend.object_of(run)
        labels = kube.owned_labels("experiment", **{EXPERIMENT_ID_LABEL: experiment_id})
        manifest = experiment_manifest(spec, experiment_id, backend.namespace, kind, job, labels)
        try:
            await kube.retrying(
                lambda: backend.custom.create_namespaced_custom_object(
                    "kubeflow.org", "v1beta1", backend.namespace, "experiments", manifest
                )
            )
        except ApiException as e:
            raise SpecError(f"Katib's Experiment was refused: {e.status} {kube.api_message(e)}", 409) from None
        return manifest

    async def delete(self, experiment_id):
        from kubernetes_asyncio.client.rest import ApiException

        backend = self.backend
        try:
            await backend.custom.delete_namespaced_custom_object(
                "kubeflow.org",
                "v1beta1",
                backend.namespace,
                "experiments",
                experiment_name(experiment_id),
                body={"propagationPolicy": "Foreground"},
            )
        except ApiException as e:
            if e.status != 404:
                raise

    # ------------------------------------------------------------------ following it

    async def drive(self, experiment_id, spec, deadline):
        """Follow the Katib Experiment and its Trials until it ends (or the task is cancelled)."""
        backend, name = self.backend, experiment_name(experiment_id)
        changed = asyncio.Event()

        def wake(*_):
            changed.set()

        trials = kube.Reflector.custom(
            backend.custom, KATIB, "trials", backend.namespace, f"{EXPERIMENT_LABEL}={name}", self.log, on_change=wake
        )
        experiments = kube.Reflector.custom(
            backend.custom,
            KATIB,
            "experiments",
            backend.namespace,
            f"{EXPERIMENT_ID_LABEL}={experiment_id}",
            self.log,
            on_change=wake,
        )
        await trials.start()
        await experiments.start()
        loop = asyncio.get_running_loop()
        try:
            while True:
                changed.clear()
                self._sync_trials(experiment_id, spec, trials.objects.values())
                experiment = experiments.objects.get(name)
                if experiment is None:
                    self._finish(experiment_id, FAILED, "its Katib Experiment was deleted outside KubeStudio")
                    return
                finished, succeeded, message = experiment_outcome(experiment)
                if finished:
                    self._finish(experiment_id, SUCCEEDED if succeeded else FAILED, f"Katib: {message}")
                    return
                if deadline is not None and loop.time() >= deadline:
                    await self.delete(experiment_id)
                    self._finish(experiment_id, None, f"stopped after max_runtime ({spec.max_runtime} s)")
                    return
                timeout = 30 if deadline is None else max(min(deadline - loop.time(), 30), 0.01)
                try:
                    await asyncio.wait_for(changed.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
        finally:
            await trials.stop()
            await experiments.stop()

    def _sync_trials(self, experiment_id, spec, objects):
        """Each Katib Trial as one of ours: new ones recorded, ended ones given their state."""
        ordered = sorted(objects, key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"]))
        with self.manager.store.session() as db:
            rows = {t.katib_trial: t for t in db.query(Trial).filter(Trial.experiment_id == experiment_id).all()}
            token_hash = db.get(Experiment, experiment_id).report_token_hash
            for obj in ordered:
                trial_name = obj["metadata"]["name"]
                if trial_name not in rows:
                    row = Trial(
                        experiment_id=experiment_id,
                        number=len(rows),
                        params=assignments(obj, spec.params),
                        raw={},
                        job_id="",
                        state=EXPERIMENT_RUNNING,
                        final=False,
                        intermediate={},
                        metrics={},
                        token_hash=token_hash,
                        katib_trial=trial_name,
                        message="",
                    )
                    db.add(row)
                    rows[trial_name] = row
            ended = []
            for obj in ordered:
                row = rows[obj["metadata"]["name"]]
                state, value, message = trial_state(obj, spec.objective.metric)
                if row.state == EXPERIMENT_RUNNING and state != EXPERIMENT_RUNNING:
                    ended.append((row.number, state, value, message))
        for number, state, value, message in ended:
            self.manager._set_trial(experiment_id, number, state, value, message)
        self.manager._set_message(
            experiment_id, trials_done=len(rows), running=sum(1 for r in rows.values() if r.state == EXPERIMENT_RUNNING)
        )

    def _finish(self, experiment_id, status, message):
        """End the experiment: its unfinished trials as cancelled, the status, the best in words."""
        with self.manager.store.session() as db:
            for trial in (
                db.query(Trial).filter(Trial.experiment_id == experiment_id, Trial.state == EXPERIMENT_RUNNING).all()
            ):
                trial.state, trial.message, trial.finished = "cancelled", f"its experiment ended: {message}", utcnow()
            record = db.get(Experiment, experiment_id)
            best = dict(record.best or {})
            metric = record.spec["objective"]["metric"]
        if status is None:
            status = SUCCEEDED if best else FAILED
        if best:
            message += f"; best: trial {best['number']} with {metric}={format_value(best['value'])}"
        self.manager._end(experiment_id, status, message)

    async def logs(self, trial_name):
        """What the pods of a Katib Trial's job wrote (each line after its pod's replica when there
        are several), as the cluster still has them."""
        backend = self.backend
        pods = sorted(
            (
                pod
                for pod in backend.pods.objects.values()
                if trial_name
                in (
                    (pod["metadata"].get("labels") or {}).get("job-name"),
                    (pod["metadata"].get("labels") or {}).get("training.kubeflow.org/job-name"),
                )
            ),
            key=lambda pod: pod["metadata"]["name"],
        )
        if not pods:
            return f"(the cluster has no pods of Katib's trial {trial_name} any more)\n"
        out = []
        for pod in pods:
            name = pod["metadata"]["name"]
            text = await backend.log_core.read_namespaced_pod_log(name, backend.namespace)
            prefix = f"[{name.removeprefix(trial_name + '-')}] " if len(pods) > 1 else ""
            out += [prefix + line for line in (text or "").splitlines()]
        return "\n".join(out) + "\n"

    async def cancel(self, experiment_id, who):
        await self.delete(experiment_id)
        self._finish(experiment_id, CANCELLED, f"cancelled by {who}")
