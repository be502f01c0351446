"""The jobs service's API described as OpenAPI 3.0 (served at ``api/openapi.json``).

Written from the handlers and the job spec in :mod:`.spec`; the tests run schemathesis against it
on a live service and check that no request, however odd, gets a 5xx.
"""

from ..services.openapi import document, errors, ok, text_or_events
from .serving.spec import FORMATS as SERVE_FORMATS
from .spec import FRAMEWORKS, NAME_MAX

JOB = {"$ref": "#/components/schemas/Job"}
USER_FILTER = {
    "name": "user",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Admins: whose jobs (a user name, or * for everyone's). Default: your own.",
}
ERROR_WORDING = {
    "r404": "No such job (or it is someone else's).",
    "r409": "The machine or cluster cannot run it (no such GPU, runtime or operator), or a name clash.",
}


def _errors(*codes):
    return errors(*codes, **ERROR_WORDING)


def path_param(name, pattern, description):
    """A path parameter: a string matching ``pattern``."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
        "description": description,
    }


JOB_ID = path_param("job_id", "^[a-z0-9][-a-z0-9]{0,62}$", "A job id, or the name of one of your jobs.")


def openapi(prefix):
    """The OpenAPI document; ``prefix`` is the service's URL prefix (``/services/jobs/``)."""
    strings = {"type": "array", "items": {"type": "string"}}
    gpu = {
        "oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "description": "cube-studio's N(TYPE), e.g. 1(A100)"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "count": {"type": "integer", "minimum": 0},
                    "type": {"type": "string"},
                    "resource": {"type": "string", "description": "e.g. nvidia.com/mig-1g.10gb"},
                },
            },
        ]
    }
    seconds = {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "description": "e.g. 30m, 2h, 1d"}]}
    spec = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "description": "Exactly one of command or script.",
        "properties": {
            "name": {"type": "string", "maxLength": NAME_MAX, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
            "project": {"type": "string", "description": "Default: public."},
            "image": {"type": "string", "description": "Default: your server's image (Kubernetes)."},
            "command": {"oneOf": [strings, {"type": "string"}], "description": "The program and its arguments."},
            "script": {"type": "string", "description": "A Python file, relative to your workspace."},
            "args": {"oneOf": [strings, {"type": "string"}], "description": "The script's arguments."},
            "working_dir": {"type": "string", "description": "Relative to your workspace (default: its root)."},
            "nodes": {"type": "integer", "minimum": 1},
            "procs_per_node": {"type": "integer", "minimum": 1},
            "resources": {
                "type": "object",
                "additionalProperties": False,
                "description": "Per node.",
                "properties": {
                    "cpu": {"oneOf": [{"type": "number"}, {"type": "string"}]},
                    "memory": {"type": "string"},
                    "gpu": gpu,
                },
            },
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "packages": {"oneOf": [strings, {"type": "string"}], "description": "pip requirements installed first."},
            "framework": {"type": "string", "enum": list(FRAMEWORKS)},
            "runtime": {"type": "string", "description": "framework trainjob: a runtime of GET api/runtimes."},
            "max_runtime": seconds,
            "retries": {"type": "integer", "minimum": 0},
            "ttl_after_finished": seconds,
        },
    }
    job = {
        "type": "object",
        "required": ["id", "name", "owner", "status"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "project": {"type": "string"},
            "kind": {"type": "string"},
            "image": {"type": "string", "nullable": True},
            "backend": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["queued", "starting", "running", "restarting", "succeeded", "failed", "cancelled"],
            },
            "message": {"type": "string"},
            "spec": {"type": "object"},
            "history": {"type": "array"},
            "refs": {"type": "object"},
            "attempt": {"type": "integer"},
            "exit": {"type": "object"},
            "created": {"type": "string"},
            "started": {"type": "string", "nullable": True},
            "finished": {"type": "string", "nullable": True},
            "queue_position": {"type": "integer", "nullable": True},
        },
    }
    serve_spec = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "description": "The model: model, or from_job (+ path).",
        "properties": {
            "from_job": {"type": "string", "description": "Serve the output of one of your jobs that succeeded."},
            "path": {"type": "string", "description": "With from_job: the folder, under the job's working directory."},
            "name": {"type": "string", "maxLength": NAME_MAX, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
            "model": {"type": "string", "description": "A model file or folder of your workspace or archives."},
            "format": {"type": "string", "enum": list(SERVE_FORMATS)},
            "class": {
                "type": "string",
                "description": "A custom model's class: MyModel (in MyModel.py) or module:Class.",
            },
            "project": {"type": "string"},
            "image": {"type": "string"},
            "resources": spec["properties"]["resources"],
            "replicas": {
                "oneOf": [
                    {"type": "integer", "minimum": 1},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                    },
                ]
            },
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "packages": {"oneOf": [strings, {"type": "string"}]},
        },
    }
    serving = {
        "type": "object",
        "required": ["id", "name", "owner", "status", "ready", "url"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "project": {"type": "string"},
            "format": {"type": "string"},
            "backend": {"type": "string"},
            "status": {"type": "string", "enum": ["starting", "ready", "restarting", "failed", "stopped"]},
            "ready": {"type": "boolean", "description": "Answering with its latest version."},
            "message": {"type": "string"},
            "spec": {"type": "object"},
            "generation": {"type": "integer"},
            "ready_generation": {"type": "integer"},
            "restarts": {"type": "integer"},
            "requests": {"type": "integer"},
            "url": {
                "type": "string",
                "description": "Where it answers through the hub (KServe's V1 and V2 paths below).",
            },
            "cluster_url": {
                "type": "string",
                "nullable": True,
                "description": "Where other services reach it without the hub (Kubernetes: its Service); "
                "null on the embedded default, whose runtimes answer the hub alone.",
            },
            "created": {"type": "string"},
            "updated": {"type": "string"},
        },
    }
    serving_ref = {"$ref": "#/components/schemas/Serving"}
    serving_id = path_param("serving_id", "^[0-9a-f]{1,32}$", "A serving id.")
    rerun = {"type": "object", "description": "Fields of the spec to change in the copy (args, name, env, ...)."}
    experiment_ref = {"$ref": "#/components/schemas/Experiment"}
    experiment_id = path_param(
        "experiment_id", "^[a-z0-9][-a-z0-9]{0,62}$", "An experiment id, or the name of one of your experiments."
    )
    experiment_hex_id = path_param("experiment_id", "^[0-9a-f]{12}$", "An experiment id.")
    trial_number = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    report_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                        "step": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
    distribution = {
        "type": "object",
        "description": "{type: uniform|loguniform|quniform|qloguniform|int|randint|choice|normal, low, high, "
        "step, values, mu, sigma}, or NNI's {_type, _value}",
    }
    experiment_spec = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "objective", "space", "trial"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": NAME_MAX - 5},
            "objective": {
                "type": "object",
                "required": ["metric"],
                "properties": {
                    "metric": {"type": "string"},
                    "direction": {"type": "string", "enum": ["maximize", "minimize"]},
                    "goal": {"type": "number"},
                },
            },
            "space": {"type": "object", "additionalProperties": distribution},
            "algorithm": {"type": "string", "enum": ["tpe", "random", "grid", "cmaes", "qmc"]},
            "seed": {"type": "integer", "minimum": 0},
            "early_stopping": {"type": "string", "enum": ["none", "median", "hyperband"]},
            "max_trials": {"type": "integer", "minimum": 1},
            "parallel_trials": {"type": "integer", "minimum": 1},
            "max_failed_trials": {"type": "integer", "minimum": 1},
            "max_runtime": seconds,
            "trial": {
                "type": "object",
                "description": "A job spec without a name; ${param} in command, args and env takes a parameter's value.",
            },
            "backend": {"type": "string", "enum": ["kubestudio", "katib", "auto"]},
        },
    }
    experiment = {
        "type": "object",
        "required": ["id", "name", "owner", "status"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "project": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed", "cancelled"]},
            "message": {"type": "string"},
            "spec": {"type": "object"},
            "backend": {"type": "string", "enum": ["kubestudio", "katib"]},
            "best": {"type": "object", "nullable": True},
            "trials": {"type": "object", "description": "How many trials are in each state."},
            "created": {"type": "string"},
            "finished": {"type": "string", "nullable": True},
        },
    }
    run_ref = {"$ref": "#/components/schemas/PipelineRun"}
    run_id = path_param(
        "run_id", "^[a-z0-9][-a-z0-9]{0,62}$", "A pipeline run's id, or a pipeline's name (your newest run of it)."
    )
    pipeline_run = {
        "type": "object",
        "required": ["id", "pipeline", "owner", "status", "tasks"],
        "properties": {
            "id": {"type": "string"},
            "pipeline": {"type": "string"},
            "owner": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed", "cancelled"]},
            "message": {"type": "string"},
            "params": {"type": "object"},
            "rerun_of": {"type": "string", "nullable": True},
            "schedule": {"type": "string", "nullable": True},
            "scheduled_for": {"type": "string", "nullable": True},
            "backend": {
                "type": "string",
                "enum": ["argo", "kubestudio"],
                "description": "Who runs the DAG: Argo Workflows, or the jobs service",
            },
            "workflow": {"type": "string", "description": "The run's Argo Workflow (backend argo only)"},
            "tasks": {
                "description": "Each task (status, job (a job's, experiment's or serving's id), attempts, "
                "outputs, reused_from, cached, cache_key, message); in a list of runs, how many tasks are in "
                "each state",
                "oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}],
            },
            "spec": {"type": "object"},
            "created": {"type": "string"},
            "finished": {"type": "string", "nullable": True},
        },
    }
    run_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["spec"],
        "properties": {
            "spec": {
                "description": "The pipeline: {name, params, parallelism, cache, schedule, tasks: {NAME: "
                "{job | experiment | serve, depends, when, retries, timeout, outputs, inputs, cache}}}, or the "
                "same as YAML text",
                "oneOf": [{"type": "object"}, {"type": "string"}],
            },
            "params": {"type": "object", "description": "Values over the pipeline's defaults."},
        },
    }
    paths = {
        "/api/pipelines/runs": {
            "get": {
                "summary": "Your pipeline runs, newest first; ?pipeline=NAME for one pipeline's",
                "parameters": [
                    USER_FILTER,
                    {"name": "pipeline", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": ok({"type": "object", "properties": {"runs": {"type": "array", "items": run_ref}}}),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Run a pipeline (every task's job checked first): the run, its tasks pending",
                "requestBody": {"required": True, "content": {"application/json": {"schema": run_request}}},
                "responses": {"201": ok(run_ref, "Running"), **_errors(400, 401, 403, 409, 413)},
            },
        },
        "/api/pipelines/export": {
            "post": {
                "summary": "The Argo Workflow (and CronWorkflow, with a schedule) that runs the pipeline as this "
                "hub's jobs on Kubernetes would run, for argo submit; 409 where jobs run on the hub's machine",
                "requestBody": {"required": True, "content": {"application/json": {"schema": run_request}}},
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["workflow"],
                            "properties": {"workflow": {"type": "object"}, "cron_workflow": {"type": "object"}},
                        }
                    ),
                    **_errors(400, 401, 403, 409, 413),
                },
            },
        },
        "/api/pipelines/schedules": {
            "get": {
                "summary": "Your pipeline schedules, the next to fire first",
                "parameters": [USER_FILTER],
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "properties": {"schedules": {"type": "array", "items": {"type": "object"}}},
                        }
                    ),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Run a pipeline on its schedule ({cron, timezone, catchup, start, max_active_runs, "
                "depends_on_past}); a schedule of the same pipeline is replaced. Its backend says who fires it: "
                "argo (a CronWorkflow, where the cluster has Argo Workflows and the schedule fits it) or kubestudio",
                "requestBody": {"required": True, "content": {"application/json": {"schema": run_request}}},
                "responses": {"201": ok({"type": "object"}, "Scheduled"), **_errors(400, 401, 403, 409, 413)},
            },
        },
        "/api/pipelines/schedules/{schedule}": {
            "parameters": [
                path_param("schedule", "^[a-z0-9][-a-z0-9]{0,62}$", "A schedule's id, or its pipeline's name.")
            ],
            "get": {"summary": "One schedule", "responses": {"200": ok({"type": "object"}), **_errors(401, 403, 404)}},
            "delete": {
                "summary": "Stop a schedule; the runs it started stay",
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403, 404)},
            },
        },
        "/api/pipelines/runs/{run_id}": {
            "parameters": [run_id],
            "get": {"summary": "One run and its tasks", "responses": {"200": ok(run_ref), **_errors(401, 403, 404)}},
            "delete": {
                "summary": "Cancel a run and its tasks' jobs (idempotent); ?forget=1 also removes its records",
                "parameters": [{"name": "forget", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": ok(run_ref), **_errors(401, 403, 404)},
            },
        },
        "/api/pipelines/runs/{run_id}/rerun": {
            "parameters": [run_id],
            "post": {
                "summary": 'A new run from a task ({"from": TASK}; default: the tasks that did not succeed), '
                "keeping the results and outputs of what is upstream",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"from": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {"201": ok(run_ref, "Running"), **_errors(400, 401, 403, 404, 409)},
            },
        },
        "/api/pipelines/runs/{run_id}/tasks/{task}/log": {
            "parameters": [run_id, path_param("task", "^[a-z][-a-z0-9]{0,15}$", "A task's name.")],
            "get": {
                "summary": "A task's log (its last attempt's job)",
                "responses": {
                    "200": {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401, 403, 404),
                },
            },
        },
        "/api/jobs": {
            "get": {
                "summary": "Your jobs, newest first",
                "parameters": [USER_FILTER],
                "responses": {
                    "200": ok({"type": "object", "properties": {"jobs": {"type": "array", "items": JOB}}}),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Submit a job: its record; with Accept: text/event-stream, its log followed from "
                "the start as Server-Sent Events instead, the first event the record "
                '({"type": "job", "job": ...})',
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
                },
                "responses": {
                    "201": {
                        **ok(JOB, "Queued"),
                        "content": {
                            **ok(JOB, "Queued")["content"],
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 403, 409, 413),
                },
            },
        },
        "/api/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {"summary": "One job", "responses": {"200": ok(JOB), **_errors(401, 403, 404)}},
            "delete": {
                "summary": "Cancel a job (idempotent); ?forget=1 also removes a finished job's record",
                "parameters": [{"name": "forget", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": ok(JOB), **_errors(401, 403, 404, 409)},
            },
        },
        "/api/jobs/{job_id}/logs": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "Every rank's log ([replica] in front of each line): plain text, or Server-Sent "
                "Events with Accept: text/event-stream",
                "responses": {"200": text_or_events("The log"), **_errors(401, 403, 404)},
            },
        },
        "/api/jobs/{job_id}/events": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "What happened to the job, in plain words",
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403, 404)},
            },
        },
        "/api/jobs/{job_id}/rerun": {
            "parameters": [JOB_ID],
            "post": {
                "summary": "Submit a copy of the job with some fields changed",
                "requestBody": {"required": False, "content": {"application/json": {"schema": rerun}}},
                "responses": {"201": ok(JOB, "Queued"), **_errors(400, 401, 403, 404, 409, 413)},
            },
        },
        "/api/runtimes": {
            "get": {
                "summary": "Training runtimes a TrainJob may name",
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403)},
            }
        },
        "/api/limits": {
            "get": {
                "summary": "What one of your jobs may hold: each project's GPU quota, this backend's GPUs",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "properties": {
                                "projects": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": "object",
                                        "properties": {"max_gpus": {"type": "integer", "nullable": True}},
                                    },
                                },
                                "machine_gpus": {
                                    "type": "object",
                                    "nullable": True,
                                    "additionalProperties": {"type": "integer"},
                                    "description": "GPUs by type name; null where the backend cannot tell (a cluster).",
                                },
                            },
                        }
                    ),
                    **_errors(401, 403),
                },
            }
        },
        "/api/servings": {
            "get": {
                "summary": "Your servings",
                "parameters": [USER_FILTER],
                "responses": {
                    "200": ok({"type": "object", "properties": {"servings": {"type": "array", "items": serving_ref}}}),
                    **_errors(401, 403, 409),
                },
            },
            "post": {
                "summary": "Serve a model",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServeSpec"}}},
                },
                "responses": {"201": ok(serving_ref, "Starting"), **_errors(400, 401, 403, 404, 409, 413)},
            },
        },
        "/api/servings/{serving_id}": {
            "parameters": [serving_id],
            "get": {"summary": "One serving", "responses": {"200": ok(serving_ref), **_errors(401, 403, 404, 409)}},
            "put": {
                "summary": "A new version (the whole spec again); the old one answers until it is ready",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServeSpec"}}},
                },
                "responses": {"200": ok(serving_ref), **_errors(400, 401, 403, 404, 409, 413)},
            },
            "delete": {
                "summary": "Stop serving and forget it",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404, 409)},
            },
        },
        "/api/experiments": {
            "get": {
                "summary": "Your experiments, newest first",
                "parameters": [USER_FILTER],
                "responses": {
                    "200": ok(
                        {"type": "object", "properties": {"experiments": {"type": "array", "items": experiment_ref}}}
                    ),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Run an experiment: a search over a space whose trials are jobs",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}}},
                },
                "responses": {"201": ok(experiment_ref, "Running"), **_errors(400, 401, 403, 409, 413)},
            },
        },
        "/api/experiments/{experiment_id}": {
            "parameters": [experiment_id],
            "get": {"summary": "One experiment", "responses": {"200": ok(experiment_ref), **_errors(401, 403, 404)}},
            "delete": {
                "summary": "Cancel an experiment and its running trials (idempotent); ?forget=1 also removes "
                "its records and its trials' jobs",
                "parameters": [{"name": "forget", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": ok(experiment_ref), **_errors(401, 403, 404)},
            },
        },
        "/api/experiments/{experiment_id}/trials": {
            "parameters": [experiment_id],
            "get": {
                "summary": "Its trials in order: parameters, state, value, intermediate values, job",
                "responses": {
                    "200": ok(
                        {"type": "object", "properties": {"trials": {"type": "array", "items": {"type": "object"}}}}
                    ),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/api/experiments/{experiment_id}/trials/{number}/report": {
            "parameters": [experiment_hex_id, trial_number],
            "post": {
                "summary": "A trial's report (its processes only: Authorization: Bearer $KUBESTUDIO_TRIAL_TOKEN). "
                'Intermediate values {"metrics": {...}, "step": N}, or final ones without a step; '
                'answers {"recorded": [...], "prune": true|false}',
                "requestBody": report_body,
                "responses": {"200": ok({"type": "object"}), **_errors(400, 401, 403, 409, 413)},
            },
        },
        "/api/experiments/{experiment_id}/trials/{number}/log": {
            "parameters": [experiment_id, trial_number],
            "get": {
                "summary": "A trial's log: its job's, or the pods' of a trial Katib made",
                "responses": {
                    "200": {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401, 403, 404),
                },
            },
        },
        "/api/experiments/{experiment_id}/katib/{trial_name}/report": {
            "parameters": [
                experiment_hex_id,
                path_param("trial_name", "^exp-[0-9a-f]{12}-[a-z0-9]{1,16}$", "The Katib Trial's name."),
            ],
            "post": {
                "summary": "A report of a trial Katib made (the experiment's token: Authorization: Bearer "
                "$KUBESTUDIO_TRIAL_TOKEN), pushed on to Katib's DB manager; the body as a trial's report",
                "requestBody": report_body,
                "responses": {"200": ok({"type": "object"}), **_errors(400, 401, 403, 409, 413, 502)},
            },
        },
        "/api/servings/{serving_id}/logs": {
            "parameters": [serving_id],
            "get": {
                "summary": "The model runtime's output, the last part",
                "responses": {
                    "200": {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401, 403, 404, 409),
                },
            },
        },
    }
    return document(
        "KubeStudio jobs service",
        "Submit training jobs (one process, or distributed: PyTorch, TensorFlow, MPI, TrainJob), follow "
        "every rank's log, cancel and rerun them; tune them (experiments: Optuna searches whose trials are "
        "jobs); chain them (pipelines: DAGs of jobs); serve models (KServe's V1 and V2 protocols at "
        "serve/<user>/<name>/).",
        prefix,
        {
            "JobSpec": spec,
            "Job": job,
            "ServeSpec": serve_spec,
            "Serving": serving,
            "ExperimentSpec": experiment_spec,
            "Experiment": experiment,
            "PipelineRun": pipeline_run,
        },
        paths,
    )
