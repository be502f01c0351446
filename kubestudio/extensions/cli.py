"""The ``kubestudio`` command: hub services from a terminal (inside a server it needs no setup).

kubestudio images build PATH --name N [--tag T] [--dockerfile F] [--no-follow]
kubestudio images list [--builds]
kubestudio images logs ID [--follow]
kubestudio images cancel ID
kubestudio jobs submit SCRIPT [--name N] [--nodes 2] [--procs-per-node 4] [--gpus "1(A100)"]
                              [--framework pytorch] [--package P]... [--detach] [-- ARGS...]
kubestudio jobs list
kubestudio jobs logs NAME [--follow]
kubestudio jobs cancel NAME
kubestudio jobs rerun NAME [--name N] [-- ARGS...]
kubestudio experiments run EXPERIMENT.yaml [--name N] [--detach]   (a hyperparameter search)
kubestudio experiments list
kubestudio experiments show NAME          (its trials, best first)
kubestudio experiments logs NAME --trial N [--follow]
kubestudio experiments cancel NAME
kubestudio pipelines run PIPELINE.yaml [-p NAME=VALUE ...] [--detach]   (a DAG of jobs)
kubestudio pipelines list [--pipeline NAME]
kubestudio pipelines show RUN              (RUN: a run's id, or a pipeline's name: its newest run)
kubestudio pipelines logs RUN TASK
kubestudio pipelines rerun RUN [--from TASK] [--detach]
kubestudio pipelines cancel RUN
kubestudio pipelines schedule PIPELINE.yaml [-p NAME=VALUE ...]   (on its schedule: cron)
kubestudio pipelines schedules
kubestudio pipelines unschedule NAME
kubestudio pipelines compile FILE.py[:PIPELINE] [-o PIPELINE.yaml]   (@pipeline of kubestudio.pipelines)
kubestudio pipelines export PIPELINE.yaml --argo [-p NAME=VALUE ...] [-o WORKFLOW.yaml]   (for argo submit)
kubestudio tensorboard open FOLDER [FOLDER...] [--name N] [--project P] [--image I] [--cpu C] [--memory M]
                                                           (prints the board's URL)
kubestudio tensorboard list
kubestudio tensorboard stop NAME|ID
kubestudio serve MODEL_PATH [--name N] [--class C] [--format F] [--gpus G] [--package P]... [--no-wait]
kubestudio serve --list | --delete NAME | --logs NAME
kubestudio predict NAME '{"instances": [[...]]}'   (or the JSON on stdin; --v2 for the V2 protocol)
"""

import argparse
import json
import os
import sys
import time

import yaml

from ..jobs.client import JobsClient
from ..jobs.experiments.client import ExperimentsClient, trials_table
from ..jobs.pipelines.client import PipelinesClient, tasks_table
from ..tensorboards.client import TensorBoardsClient
from .client import ImagesClient, ServiceError
from .paths import PathRefused, user_path, workspace_relative


def _print_build(build, out):
    where = f" (#{build['queue_position']} in the queue)" if build.get("queue_position") else ""
    print(f"build {build['id']}: {build['status']}{where}  {build['image']}", file=out)
    if build.get("message"):
        print(f"  {build['message']}", file=out)


def _follow(client, build_id, out):
    final = None
    for item in client.follow(build_id):
        if isinstance(item, dict):
            final = item
        else:
            print(item, file=out, flush=True)
    if final:
        _print_build(final, out)
        return 0 if final["status"] in ("succeeded", "exists") else 1
    return 1


def main(argv=None, out=sys.stdout):
    parser = argparse.ArgumentParser(prog="kubestudio", description="KubeStudio hub services from the terminal")
    sub = parser.add_subparsers(dest="service", required=True)
    images = sub.add_parser("images", help="build images and list yours").add_subparsers(dest="command", required=True)
    build = images.add_parser("build", help="build the folder PATH of your workspace (it holds a Dockerfile)")
    build.add_argument("path")
    build.add_argument("--name", help="image name (default: the folder's name)")
    build.add_argument("--tag", help="tag (default: a hash of the content: the same content is never built twice)")
    build.add_argument("--dockerfile", default=None, help="Dockerfile path inside PATH (default: Dockerfile)")
    build.add_argument("--no-follow", action="store_true", help="return at once instead of showing the log")
    listing = images.add_parser("list", help="your images (with --builds: your builds)")
    listing.add_argument("--builds", action="store_true")
    logs = images.add_parser("logs", help="a build's log")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep following until the build ends")
    cancel = images.add_parser("cancel", help="cancel a queued or running build")
    cancel.add_argument("id")
    add_jobs_commands(sub)
    add_experiment_commands(sub)
    add_pipeline_commands(sub)
    add_tensorboard_commands(sub)
    add_serving_commands(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    passed = []
    if "--" in argv:  # what follows -- goes to the job's script untouched
        argv, passed = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse fills an optional positional before the options that follow it:
        # `predict NAME --v2 '{...}'` leaves the request over; it is the request all the same
        if getattr(args, "service", None) == "predict" and args.request is None and len(extra) == 1:
            args.request = extra[0]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if passed and args.service != "jobs":
        parser.error("arguments after -- are for jobs only")
    commands = {
        "images": lambda: images_main(args, out),
        "jobs": lambda: jobs_main(args, passed, out),
        "experiments": lambda: experiments_main(args, out),
        "pipelines": lambda: pipelines_main(args, out),
        "tensorboard": lambda: tensorboard_main(args, out),
        "serve": lambda: serve_main(args, out),
        "predict": lambda: predict_main(args, out),
    }
    try:
        return commands[args.service]()
    except PathRefused as e:
        print(f"kubestudio: {e}", file=sys.stderr)
        return 2
    except ServiceError as e:  # the service's own words, and the HTTP status
        status = f" (HTTP {e.status})" if e.status else ""
        print(f"kubestudio: {e}{status}", file=sys.stderr)
        return 2


def images_main(args, out):
    client = ImagesClient()
    if args.command == "build":
        request = {"context": workspace_relative(args.path)}
        for key in ("name", "tag", "dockerfile"):
            if getattr(args, key):
                request[key] = getattr(args, key)
        result = client.build(**request)
        _print_build(result, out)
        if args.no_follow or result["status"] not in ("queued", "running"):
            return 0 if result["status"] in ("queued", "running", "succeeded", "exists") else 1
        return _follow(client, result["id"], out)
    if args.command == "list":
        if args.builds:
            for b in client.builds():
                print(f"{b['id']}  {b['status']:<10} {b['created']}  {b['image']}", file=out)
        else:
            for i in client.images():
                size = f"{i['size'] / 2**20:.1f} MiB" if i.get("size") else ""  # as the images page shows it
                print(f"{i['image']}  {size}  {i.get('digest') or ''}", file=out)
        return 0
    if args.command == "logs":
        if args.follow:
            return _follow(client, args.id, out)
        print(client.log(args.id), end="", file=out)
        return 0
    if args.command == "cancel":
        _print_build(client.cancel(args.id), out)
        return 0
    return 1


def add_jobs_commands(sub):
    jobs = sub.add_parser("jobs", help="run training jobs and follow them").add_subparsers(
        dest="command", required=True
    )
    submit = jobs.add_parser("submit", help="run a Python script of your workspace as a job (its arguments after --)")
    submit.add_argument("script")
    submit.add_argument("--name", help="job name (default: the script's name and a number)")
    submit.add_argument("--nodes", type=int, default=1)
    submit.add_argument("--procs-per-node", type=int, default=1)
    submit.add_argument("--gpus", help="GPUs per node: a count or N(TYPE), e.g. 1(A100)")
    submit.add_argument("--cpu", help="CPUs per node, e.g. 4 or 500m")
    submit.add_argument("--memory", help="memory per node, e.g. 16Gi")
    submit.add_argument("--framework", default="auto", help="auto, python, pytorch, tensorflow, mpi or trainjob")
    submit.add_argument("--runtime", help="TrainJob runtime (kubestudio jobs runtimes)")
    submit.add_argument("--project", help="project (default: public)")
    submit.add_argument("--package", action="append", default=[], help="pip requirement installed first (repeat)")
    submit.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    submit.add_argument("--max-runtime", help="time limit, e.g. 2h")
    submit.add_argument("--retries", type=int, default=0)
    submit.add_argument("--detach", action="store_true", help="return once submitted instead of following the log")
    jobs.add_parser("list", help="your jobs")
    logs = jobs.add_parser("logs", help="a job's log (every rank)")
    logs.add_argument("name")
    logs.add_argument("--follow", "-f", action="store_true", help="keep following until the job ends")
    cancel = jobs.add_parser("cancel", help="stop a queued or running job")
    cancel.add_argument("name")
    rerun = jobs.add_parser("rerun", help="run a copy of a job (new arguments after --)")
    rerun.add_argument("name")
    rerun.add_argument("--name", dest="new_name", help="name of the copy (default: NAME-r2, ...)")
    rerun.add_argument("--detach", action="store_true")
    jobs.add_parser("runtimes", help="training runtimes a TrainJob may use")


def _print_job(job, out):
    where = f" (#{job['queue_position']} in the queue)" if job.get("queue_position") else ""
    print(f"job {job['name']} ({job['id']}): {job['status']}{where}", file=out)
    if job.get("message"):
        print(f"  {job['message']}", file=out)


def _follow_job(client, job, out, lines=None):
    for line in lines if lines is not None else client.logs(job["id"], follow=True):
        print(line, file=out, flush=True)
    final = client.get(job["id"])
    _print_job(final, out)
    return 0 if final["status"] == "succeeded" else 1


def jobs_main(args, passed, out):
    client = JobsClient()
    if args.command == "submit":
        script = workspace_relative(args.script, "the script")
        spec = {
            "script": script,
            "nodes": args.nodes,
            "procs_per_node": args.procs_per_node,
            "framework": args.framework,
            "retries": args.retries,
        }
        spec["name"] = args.name or client.free_name(os.path.splitext(os.path.basename(script))[0])
        if passed:
            spec["args"] = passed
        resources = {k: v for k, v in (("gpu", args.gpus), ("cpu", args.cpu), ("memory", args.memory)) if v}
        if resources:
            spec["resources"] = resources
        for key, value in (("runtime", args.runtime), ("project", args.project), ("max_runtime", args.max_runtime)):
            if value:
                spec[key] = value
        if args.package:
            spec["packages"] = args.package
        if args.env:
            bad = [e for e in args.env if "=" not in e]
            if bad:
                raise ServiceError(0, f"--env {bad[0]}: write NAME=VALUE")
            spec["env"] = dict(e.split("=", 1) for e in args.env)
        if args.detach:
            _print_job(client.create(spec), out)
            return 0
        job, lines = client.create(spec, follow=True)  # submitted and followed in one request
        _print_job(job, out)
        return _follow_job(client, job, out, lines)
    if args.command == "list":
        for job in client.list():
            ranks = f"{job['spec'].get('nodes', 1)}x{job['spec'].get('procs_per_node', 1)}"
            print(f"{job['name']:<30} {job['status']:<10} {ranks:<6} {job['created']}  {job['message']}", file=out)
        return 0
    if args.command == "logs":
        if args.follow:
            return _follow_job(client, client.get(args.name), out)
        print(client.logs(args.name), end="", file=out)
        return 0
    if args.command == "cancel":
        _print_job(client.delete(args.name), out)
        return 0
    if args.command == "rerun":
        changes = {"args": passed} if passed else {}
        if args.new_name:
            changes["name"] = args.new_name
        job = client.rerun(args.name, **changes)
        _print_job(job, out)
        return 0 if args.detach else _follow_job(client, job, out)
    if args.command == "runtimes":
        for runtime in client.runtimes():
            print(f"{runtime['name']:<24} {runtime.get('framework', '')}  {runtime.get('description', '')}", file=out)
        return 0
    return 1


def add_experiment_commands(sub):
    experiments = sub.add_parser(
        "experiments", help="hyperparameter searches whose trials are jobs (Optuna inside)"
    ).add_subparsers(dest="command", required=True)
    run = experiments.add_parser("run", help="run the experiment a YAML file describes, and follow its trials")
    run.add_argument("file", help="the spec: objective, space, trial (its script relative to the file), ...")
    run.add_argument("--name", help="experiment name (default: the spec's, else the file's)")
    run.add_argument("--detach", action="store_true", help="return once it is submitted")
    experiments.add_parser("list", help="your experiments")
    show = experiments.add_parser("show", help="an experiment's trials, best first")
    show.add_argument("name")
    logs = experiments.add_parser("logs", help="a trial's log")
    logs.add_argument("name")
    logs.add_argument("--trial", type=int, required=True, help="the trial's number")
    logs.add_argument("--follow", "-f", action="store_true")
    cancel = experiments.add_parser("cancel", help="stop an experiment and its running trials")
    cancel.add_argument("name")


def add_pipeline_commands(sub):
    pipelines = sub.add_parser("pipelines", help="DAGs of tasks, each a job").add_subparsers(
        dest="command", required=True
    )
    run = pipelines.add_parser("run", help="run the pipeline a YAML file describes, and follow its tasks")
    run.add_argument("file", help="the spec: name, params, tasks (each a job, depends, outputs, ...)")
    run.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE, over the pipeline's default")
    run.add_argument("--detach", action="store_true", help="return once it is started")
    listing = pipelines.add_parser("list", help="your runs, newest first")
    listing.add_argument("--pipeline", help="only this pipeline's")
    show = pipelines.add_parser("show", help="a run's tasks")
    show.add_argument("run", help="a run's id, or a pipeline's name (your newest run of it)")
    logs = pipelines.add_parser("logs", help="a task's log")
    logs.add_argument("run")
    logs.add_argument("task")
    rerun = pipelines.add_parser("rerun", help="run again from a task (default: the ones that did not succeed)")
    rerun.add_argument("run")
    rerun.add_argument("--from", dest="from_task", help="the task to start from; what is upstream is kept")
    rerun.add_argument("--detach", action="store_true", help="return once it is started")
    cancel = pipelines.add_parser("cancel", help="stop a run and its tasks' jobs")
    cancel.add_argument("run")
    schedule = pipelines.add_parser("schedule", help="run the pipeline a YAML file describes on its schedule (cron)")
    schedule.add_argument("file")
    schedule.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE, over the pipeline's default")
    pipelines.add_parser("schedules", help="your schedules and when each fires next")
    unschedule = pipelines.add_parser("unschedule", help="stop a pipeline's schedule (its runs stay)")
    unschedule.add_argument("name")
    compiling = pipelines.add_parser("compile", help="write the YAML of a @pipeline in a Python file")
    compiling.add_argument("source", help="FILE.py, or FILE.py:NAME when it has several pipelines")
    compiling.add_argument("-o", "--output", help="the YAML file to write (default: printed)")
    export = pipelines.add_parser("export", help="write the Argo Workflow that runs a pipeline, for argo submit")
    export.add_argument("file", help="the pipeline's YAML file")
    export.add_argument("--argo", action="store_true", required=True, help="as an Argo Workflow (the one format)")
    export.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE, over the pipeline's default")
    export.add_argument("-o", "--output", help="the YAML file to write (default: printed)")


def _compile_pipeline(source, output, out):
    import importlib.util

    from ..pipelines import Pipeline

    path, _, wanted = source.partition(":")
    module_spec = importlib.util.spec_from_file_location("_kubestudio_pipeline", path)
    if module_spec is None or not os.path.exists(path):
        print(f"kubestudio: {path}: no such Python file", file=out)
        return 2
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    found = {n: v for n, v in vars(module).items() if isinstance(v, Pipeline)}
    if wanted:
        found = {wanted: found[wanted]} if wanted in found else {}
    if len(found) != 1:
        names = ", ".join(sorted(n for n, v in vars(module).items() if isinstance(v, Pipeline))) or "none"
        print(f"kubestudio: {source}: name one @pipeline as FILE.py:NAME (found: {names})", file=out)
        return 2
    text = next(iter(found.values())).to_yaml()
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {output}", file=out)
    else:
        print(text, end="", file=out)
    return 0


def _print_run(run, out):
    by = f", Argo Workflow {run['workflow']}" if run.get("workflow") else ""
    print(f"run {run['id']} of {run['pipeline']}: {run['status']}{by}", file=out)
    if run.get("message"):
        print(f"  {run['message']}", file=out)


def _follow_run(client, run, out):
    seen = {}
    while True:  # each task's changes as they come
        run = client.get(run["id"])
        for task in run["tasks"]:
            if seen.get(task["name"]) != task["status"]:
                seen[task["name"]] = task["status"]
                said = f" ({task['message']})" if task["message"] else ""
                print(f"{task['name']}: {task['status']}{said}", file=out, flush=True)
        if run["status"] != "running":
            break
        time.sleep(1)
    _print_run(run, out)
    return 0 if run["status"] == "succeeded" else 1


def pipelines_main(args, out):
    if args.command == "compile":  # on this machine alone: no service needed
        return _compile_pipeline(args.source, args.output, out)
    client = PipelinesClient()
    params = {}
    for item in getattr(args, "param", ()):
        name, sep, value = item.partition("=")
        if not sep:
            print(f"kubestudio: --param {item!r}: give NAME=VALUE", file=out)
            return 2
        params[name] = value
    if args.command == "schedule":
        schedule = client.schedule(args.file, params=params)
        print(
            f"pipeline {schedule['pipeline']} scheduled ({schedule['cron']}, {schedule['timezone']}): "
            f"next run at {schedule['next_fire']}",
            file=out,
        )
        return 0
    if args.command == "export":
        exported = client.export_argo(args.file, params=params)
        text = yaml.safe_dump_all(
            [exported["workflow"], *([exported["cron_workflow"]] if "cron_workflow" in exported else [])],
            sort_keys=False,
            width=120,
        )
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {args.output}: argo submit {args.output}", file=out)
        else:
            print(text, end="", file=out)
        return 0
    if args.command == "schedules":
        for s in client.schedules():
            print(f"{s['pipeline']:<14} {s['cron']:<16} next {s['next_fire']}  {s['message']}", file=out)
        return 0
    if args.command == "unschedule":
        print(f"pipeline {client.unschedule(args.name)['pipeline']}: no longer scheduled", file=out)
        return 0
    if args.command in ("run", "rerun"):
        if args.command == "run":
            run = client.run(args.file, params=params)
        else:
            run = client.rerun(args.run, from_task=args.from_task)
        _print_run(run, out)
        return 0 if args.detach else _follow_run(client, run, out)
    if args.command == "list":
        for r in client.list(pipeline=args.pipeline):
            counts = ", ".join(f"{n} {state}" for state, n in sorted(r["tasks"].items()))
            print(f"{r['id']}  {r['pipeline']:<14} {r['status']:<10} {counts}  {r['message']}", file=out)
        return 0
    if args.command == "show":
        run = client.get(args.run)
        _print_run(run, out)
        for row in tasks_table(run):
            print("  " + row, file=out)
        return 0
    if args.command == "logs":
        print(client.logs(args.run, args.task), end="", file=out)
        return 0
    if args.command == "cancel":
        _print_run(client.cancel(args.run), out)
        return 0
    return 1


def _print_experiment(experiment, out):
    counts = ", ".join(f"{n} {state}" for state, n in sorted(experiment["trials"].items())) or "no trials yet"
    print(f"experiment {experiment['name']} ({experiment['id']}): {experiment['status']} ({counts})", file=out)
    if experiment.get("message"):
        print(f"  {experiment['message']}", file=out)
    best = experiment.get("best")
    if best:
        params = " ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"  best: trial {best['number']}, {best['value']:.6g} ({params})", file=out)


def _print_trials(client, experiment, out):
    rows = trials_table(client.trials(experiment["id"]), experiment["spec"]["objective"]["direction"])
    metric = experiment["spec"]["objective"]["metric"]
    header = ("trial", "state", metric, "parameters", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + ("  " + row[4] if row[4] else ""), file=out)


def _experiment_spec(path, name):
    """The spec in a YAML file, its trial's script made a workspace path (it is written relative to
    the file, as the file's neighbours are)."""
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict):
        raise ServiceError(0, f"{path}: not a YAML mapping (objective, space, trial, ...)")
    trial = spec.get("trial")
    if isinstance(trial, dict) and isinstance(trial.get("script"), str):
        where = os.path.normpath(os.path.join(os.path.dirname(path), trial["script"]))
        spec["trial"] = {**trial, "script": workspace_relative(where, "trial.script")}
    if name:
        spec["name"] = name
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0].lower().replace("_", "-"))
    return spec


def experiments_main(args, out):
    client = ExperimentsClient()
    if args.command == "run":
        experiment = client.create(_experiment_spec(args.file, args.name))
        _print_experiment(experiment, out)
        if args.detach:
            return 0
        seen = {}
        while True:  # each trial's changes as they come, then the table
            experiment = client.get(experiment["id"])
            for trial in client.trials(experiment["id"]):
                said = (trial["state"], trial["value"])
                if seen.get(trial["number"]) != said:
                    seen[trial["number"]] = said
                    value = f" {trial['value']:.6g}" if trial["value"] is not None else ""
                    params = " ".join(f"{k}={v}" for k, v in trial["params"].items())
                    print(f"trial {trial['number']}: {trial['state']}{value} ({params})", file=out, flush=True)
            if experiment["status"] != "running":
                break
            time.sleep(2)
        _print_experiment(experiment, out)
        return 0 if experiment["status"] == "succeeded" else 1
    if args.command == "list":
        for e in client.list():
            best = f"{e['best']['value']:.6g}" if e.get("best") else ""
            print(
                f"{e['name']:<30} {e['status']:<10} {sum(e['trials'].values()):>4} trials  {best:<10} {e['message']}",
                file=out,
            )
        return 0
    if args.command == "show":
        experiment = client.get(args.name)
        _print_experiment(experiment, out)
        _print_trials(client, experiment, out)
        return 0
    if args.command == "logs":
        logs = client.logs(args.name, args.trial, follow=args.follow)
        if args.follow:
            for line in logs:
                print(line, file=out, flush=True)
        else:
            print(logs, end="", file=out)
        return 0
    if args.command == "cancel":
        _print_experiment(client.delete(args.name), out)
        return 0
    return 1


def add_tensorboard_commands(sub):
    boards = sub.add_parser("tensorboard", help="TensorBoard on your log folders, through the hub").add_subparsers(
        dest="command", required=True
    )
    opening = boards.add_parser(
        "open", help="open a board on FOLDER(s) (several: compared in one board); prints its URL"
    )
    opening.add_argument("folders", nargs="+")
    opening.add_argument("--name", help="the board's name (default: its folders)")
    opening.add_argument("--project", help="Kubernetes: the project whose nodes run the board (default: public)")
    opening.add_argument("--image", help="Kubernetes: TensorBoard's image, one the administrator allows")
    opening.add_argument("--cpu", help="Kubernetes: CPU for the board, e.g. 1 or 500m")
    opening.add_argument("--memory", help="Kubernetes: memory for the board, e.g. 4Gi")
    boards.add_parser("list", help="your boards")
    stop = boards.add_parser("stop", help="stop a board (by name or id)")
    stop.add_argument("board")


def add_serving_commands(sub):
    serve = sub.add_parser("serve", help="serve a model of your workspace (a file or folder); prints its URL")
    serve.add_argument("model", nargs="?", help="the model file or folder (models/iris)")
    serve.add_argument("--name", help="its name in URLs (default: the folder's name)")
    serve.add_argument("--class", dest="model_class", help="a model class: MyModel (in MyModel.py) or module:Class")
    serve.add_argument("--format", choices=("auto", "sklearn", "pytorch", "custom"), default=None)
    serve.add_argument("--gpus", help='GPUs: a count, or cube-studio\'s "1(A100)"')
    serve.add_argument("--package", action="append", default=[], help="a package to pip-install first (repeatable)")
    serve.add_argument("--no-wait", action="store_true", help="return at once instead of waiting until it is ready")
    serve.add_argument("--list", action="store_true", help="your servings")
    serve.add_argument("--delete", metavar="NAME", help="stop serving NAME")
    serve.add_argument("--logs", metavar="NAME", help="the model runtime's output")
    predict = sub.add_parser("predict", help="predictions of a serving for a JSON request")
    predict.add_argument("name")
    predict.add_argument("request", nargs="?", help='{"instances": [[...]]} (default: read from stdin)')
    predict.add_argument("--owner", help="another user's serving you may call")
    predict.add_argument("--v2", action="store_true", help="the V2 (Open Inference) protocol: the body is its JSON")


def serve_main(args, out):
    client = JobsClient()
    if args.list:
        for serving in client.servings():
            state = "ready" if serving["ready"] else serving["status"]
            print(
                f"{serving['name']:<24} {state:<10} v{serving['generation']:<3} {serving['requests']:>8} requests  "
                f"{client.public_url(serving['url'])}",
                file=out,
            )
        return 0
    if args.delete:
        client.delete_serving(args.delete)
        print(f"serving {args.delete}: deleted", file=out)  # as cancel and stop say what they did
        return 0
    if args.logs:
        print(client.serving_logs(args.logs), end="", file=out)
        return 0
    if not args.model:
        raise ServiceError(0, "name the model file or folder to serve (kubestudio serve models/iris)")
    fields = {"packages": args.package} if args.package else {}
    if args.model_class:
        fields["model_class"] = args.model_class
    if args.format:
        fields["format"] = args.format
    if args.gpus:
        fields["resources"] = {"gpu": args.gpus}
    record = client.serve(model=user_path(args.model, "a model"), name=args.name, **fields)
    if not args.no_wait:
        record = client.wait_ready(record["name"])
    print(client.public_url(record["url"]), file=out)
    return 0


def predict_main(args, out):
    client = JobsClient()
    text = args.request if args.request is not None else sys.stdin.read()
    try:
        body = json.loads(text)
    except ValueError as e:
        raise ServiceError(0, f"the request is not JSON: {e}") from None
    path = client.predict_url(args.name, args.owner, args.v2)
    print(json.dumps(client._call("POST", path, json=body).json()), file=out)
    return 0


def tensorboard_main(args, out):
    client = TensorBoardsClient()
    if args.command == "open":
        resources = {key: value for key, value in (("cpu", args.cpu), ("memory", args.memory)) if value}
        print(
            client.open(
                [user_path(f) for f in args.folders],
                name=args.name,
                project=args.project,
                image=args.image,
                resources=resources or None,
            ),
            file=out,
        )
        return 0
    if args.command == "list":
        for board in client.list():
            print(
                f"{board['name']:<30} {board['status']:<9} {client.public_url(board)}  {', '.join(board['logdirs'])}",
                file=out,
            )
        return 0
    if args.command == "stop":
        client.stop(args.board)
        print(f"board {args.board}: stopped", file=out)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
