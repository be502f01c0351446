"""HTTP handlers of experiments in the jobs service: the JSON API under ``api/experiments``, and
the door trials report through (``api/experiments/<id>/trials/<n>/report``, with the trial's own
token rather than a hub login).

Who may do what: ``custom:kubestudio:jobs:run`` runs, reads and cancels your own experiments (the
admin scope: everyone's); another user's experiment answers 404. A report is taken only with the
token the service gave that trial's processes (403 otherwise).
"""

import json

from tornado import web

from ...services.web import http_error
from ..handlers import JobsBaseHandler
from ..spec import SpecError
from .manager import ReportRefused


class ExperimentsBaseHandler(JobsBaseHandler):
    noun = "experiment"

    @property
    def manager(self):
        return self.settings["experiments"]

    def checked_experiment(self, ref):
        """The id of the experiment ``ref`` names (its id, or the name of one of the caller's);
        404 if there is none the caller may see."""
        if self.manager.owner_of(ref) is None:
            ref = self.manager.id_by_name(self.identity["name"], ref) or ref
        self.owner_checked(ref)
        return ref


class ExperimentsHandler(ExperimentsBaseHandler):
    async def get(self):
        self.require_access()
        self.write_json({"experiments": self.manager.list(owner=self.owner_filter())})

    async def post(self):
        self.require_access()
        if self.identity["kind"] != "user":
            raise http_error(403, "experiments belong to users: run one with a user's token")
        try:
            experiment = await self.manager.create(self.identity, self.json_body())
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Location", f"{self.settings['service_prefix']}api/experiments/{experiment['id']}")
        self.write_json(experiment, 201)


class ExperimentHandler(ExperimentsBaseHandler):
    async def get(self, ref):
        self.require_access()
        self.write_json(self.manager.get(self.checked_experiment(ref)))

    async def delete(self, ref):
        """Cancel a running experiment and its trials (idempotent); ``?forget=1`` also removes a
        finished one's records and its trials' jobs (its name is free again)."""
        self.require_access()
        experiment_id = self.checked_experiment(ref)
        experiment = await self.manager.cancel(experiment_id, self.identity["name"])
        if self.get_argument("forget", "") in ("1", "true", "yes"):
            await self.manager.forget(experiment_id)
            experiment = {**experiment, "forgotten": True}
        self.write_json(experiment)


class TrialsHandler(ExperimentsBaseHandler):
    async def get(self, ref):
        """Every trial: its parameters, state (its job's while it runs), value and reports."""
        self.require_access()
        experiment_id = self.checked_experiment(ref)
        self.write_json({"trials": self.manager.trials(experiment_id)})


class TrialLogHandler(ExperimentsBaseHandler):
    async def get(self, ref, number):
        """A trial's log as text: its job's (as the jobs' own logs), or the pods' of a trial Katib made."""
        self.require_access()
        experiment_id = self.checked_experiment(ref)
        text = await self.manager.trial_log(experiment_id, int(number))
        if text is None:
            raise http_error(404, f"experiment {ref} has no trial {number}")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class ReportHandler(web.RequestHandler):
    """A trial's report: its own token (``Authorization: Bearer <token>``), no hub login."""

    def check_xsrf_cookie(self):
        pass  # no cookie is read here: the trial's token alone authorizes

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code, **kwargs):
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def post(self, experiment_id, number):
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise http_error(401, "send the trial's token: 'Authorization: Bearer $KUBESTUDIO_TRIAL_TOKEN'")
        if len(self.request.body) > 64 * 1024:
            raise http_error(413, "a report is at most 64 KiB")
        try:
            body = json.loads(self.request.body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise http_error(400, f"the report is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise http_error(400, "the report must be a JSON object")
        experiments = self.settings["experiments"]
        try:
            if number.isdigit():
                answer = experiments.report(experiment_id, int(number), token.strip(), body)
            else:  # a Katib Trial's name: Katib made the trial from the experiment's template
                answer = await experiments.report_katib(experiment_id, number, token.strip(), body)
        except ReportRefused as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))
