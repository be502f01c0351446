"""Pure builders for jobs on Kubernetes: (job run, settings) -> the object to create.

``framework`` and ``nodes`` pick the kind: one process -> ``batch/v1 Job``; ``pytorch`` ->
``PyTorchJob`` (Master + Workers, ``nprocPerNode``); ``tensorflow`` -> ``TFJob`` (Chief +
Workers); ``mpi`` -> ``MPIJob`` (Launcher + Workers, ``slotsPerWorker``); ``trainjob`` ->
``TrainJob`` (``runtimeRef``). Every pod gets what a workspace pod gets (the user's workspace and
archives subPaths at /mnt/<user> and /archives/<user>, the project's node selector, tolerations,
mounts and GPU-type affinity, our labels), no service-account token, and runs as the workspace's
user. One attempt is one object: the manager retries by creating the next, so the operators run
each with ``backoffLimit: 0``. Nothing here talks to a cluster.
"""

import shlex

from ...names import (
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_GPUS,
    LABEL_JOB_ID,
    LABEL_PROJECT,
    LABEL_USER,
    MANAGED_BY,
    PROJECT_ANNOTATION,
)
from ...slugs import safe_slug
from ...spawner.pods import container_resources, gpu_placement, project_scheduling, workspace_paths, workspace_storage
from .packagelayer import install_script, layer_folder

TRAINING = "kubeflow.org/v1"
TRAINER = "trainer.kubeflow.org/v1alpha1"
# kind -> (apiVersion, plural, the operator it needs)
KINDS = {
    "Job": ("batch/v1", "jobs", None),
    "PyTorchJob": (TRAINING, "pytorchjobs", "the Kubeflow Training Operator"),
    "TFJob": (TRAINING, "tfjobs", "the Kubeflow Training Operator"),
    "MPIJob": (TRAINING, "mpijobs", "the Kubeflow Training Operator"),
    "TrainJob": (TRAINER, "trainjobs", "Kubeflow Trainer"),
}
FRAMEWORK_KIND = {
    "python": "Job",
    "pytorch": "PyTorchJob",
    "tensorflow": "TFJob",
    "mpi": "MPIJob",
    "trainjob": "TrainJob",
}
PYTORCH_PORT = 23456
PATCH_MANAGER = "kubestudio.io/jobs"


def kind_of(spec):
    return FRAMEWORK_KIND[spec.kind]


def object_name(run):
    """``<name>-<id6>`` (``-a<N>`` for retries): unique, and short enough for ``-worker-NN``."""
    suffix = f"-a{run.attempt}" if run.attempt else ""
    return f"{run.spec.name}-{run.id[:6]}{suffix}"


def labels(run):
    return {
        **MANAGED_BY,
        LABEL_COMPONENT: "train",
        LABEL_USER: run.slug,
        LABEL_PROJECT: safe_slug(run.project.name, max_length=63),
        LABEL_JOB_ID: run.id,
        LABEL_ATTEMPT: str(run.attempt),
    }


def command(run, settings):
    """What the main container runs: the script from the workspace (through torchrun for several
    processes per node), after pip installs the job's packages."""
    spec = run.spec
    workspace, _ = workspace_paths(run.owner, settings)
    script = f"{workspace}/{spec.script}" if spec.script else None
    argv = spec.argv("python", script)
    if script and spec.procs_per_node > 1 and spec.kind in ("pytorch", "trainjob"):
        argv = [
            "torchrun",
            "--nnodes=$(PET_NNODES)",
            "--nproc_per_node=$(PET_NPROC_PER_NODE)",
            "--node_rank=$(PET_NODE_RANK)",
            "--master_addr=$(PET_MASTER_ADDR)",
            "--master_port=$(PET_MASTER_PORT)",
            script,
            *spec.args,
        ]
    if spec.kind == "mpi":
        # the operator names the hosts in $OMPI_MCA_orte_default_hostfile
        argv = ["mpirun", "-np", str(spec.ranks), *argv]
    steps = []
    if spec.kind == "trainjob":  # a TrainJob's trainer has no workingDir: the command goes there itself
        steps.append("cd " + shlex.quote(f"{workspace}/{spec.working_dir}".rstrip("/")))
    if spec.packages:  # on the image's Python, kept in the workspace for the next job (packagelayer)
        steps.append(
            install_script(
                layer_folder(workspace, run.image or spec.image, spec.packages), spec.packages, python="python"
            )
        )
    if steps:
        return ["sh", "-c", " && ".join(steps) + ' && exec "$@"', "--", *argv]
    return argv


def container(run, settings, image, name, argv, ports=None):
    spec = run.spec
    workspace, archives = workspace_paths(run.owner, settings)
    _, mounts = workspace_storage(run.owner, run.project, settings)
    env = {
        **spec.env,
        "KUBESTUDIO_USER": run.owner,
        "KUBESTUDIO_USER_SLUG": run.slug,
        "KUBESTUDIO_PROJECT": run.project.name,
        "KUBESTUDIO_WORKSPACE": workspace,
        "KUBESTUDIO_ARCHIVES": archives,
        "KUBESTUDIO_JOB": spec.name,
        "KUBESTUDIO_JOB_ID": run.id,
        "PYTHONUNBUFFERED": "1",
    }
    if not spec.resources.gpu.count:
        env["NVIDIA_VISIBLE_DEVICES"] = "none"  # the NVIDIA runtime would show the node's GPUs
    body = {
        "name": name,
        "image": image,
        "command": argv,
        "workingDir": f"{workspace}/{spec.working_dir}".rstrip("/"),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": mounts,
        "resources": container_resources(spec.resources, settings),
        "securityContext": {"runAsUser": settings.uid, "runAsGroup": settings.gid, "allowPrivilegeEscalation": False},
    }
    if ports:
        body["ports"] = ports
    return body


def pod_template(run, settings, main_container):
    project = run.project
    volumes, _ = workspace_storage(run.owner, project, settings)
    _, affinity = gpu_placement(
        run.spec.resources.gpu.count, run.spec.resources.gpu.type, run.spec.resources.gpu.resource, settings
    )
    spec = {
        "containers": [main_container],
        "volumes": volumes,
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"fsGroup": settings.fs_gid},
    }
    spec.update(project_scheduling(project, affinity))
    # the GPUs and project on every pod, as on workspace pods: a project's GPU quota counts both
    pod_labels = {**labels(run), LABEL_GPUS: str(run.spec.resources.gpu.count)}
    annotations = {"kubestudio.io/username": run.owner, PROJECT_ANNOTATION: run.project.name}
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": spec}


def trainjob_patch(run, settings, main, replicated_job="node"):
    """What every pod gets, for the runtime's ``node`` pods: Trainer v2 takes it as a runtime patch
    (the TrainJob itself names only image, command, env and resources)."""
    template = pod_template(run, settings, main)
    pod = template["spec"]
    patch_pod = {
        key: pod[key] for key in ("volumes", "nodeSelector", "tolerations", "affinity", "securityContext") if key in pod
    }
    patch_pod["containers"] = [
        {"name": main["name"], "volumeMounts": main["volumeMounts"], "securityContext": main["securityContext"]}
    ]
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": replicated_job,
                            "template": {"spec": {"template": {"metadata": template["metadata"], "spec": patch_pod}}},
                        }
                    ]
                }
            }
        },
    }


def _replica(template, replicas):
    return {"replicas": replicas, "restartPolicy": "Never", "template": template}


def job_manifest(run, settings, image):
    """The object that runs one attempt of ``run`` (a dict ready for the API)."""
    spec = run.spec
    kind = kind_of(spec)
    api_version, _, _ = KINDS[kind]
    name = object_name(run)
    metadata = {
        "name": name,
        "namespace": settings.namespace,
        "labels": labels(run),
        "annotations": {"kubestudio.io/username": run.owner, "kubestudio.io/job-name": spec.name},
    }
    argv = command(run, settings)
    run_policy = {"cleanPodPolicy": "None", "backoffLimit": 0}
    if spec.max_runtime:
        run_policy["activeDeadlineSeconds"] = spec.max_runtime
    if spec.ttl_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = spec.ttl_after_finished

    if kind == "Job":
        body = {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "template": pod_template(run, settings, container(run, settings, image, "job", argv)),
        }
        for key, value in (
            ("activeDeadlineSeconds", spec.max_runtime),
            ("ttlSecondsAfterFinished", spec.ttl_after_finished),
        ):
            if value is not None:
                body[key] = value
    elif kind == "PyTorchJob":
        ports = [{"name": "pytorchjob-port", "containerPort": PYTORCH_PORT}]
        template = pod_template(run, settings, container(run, settings, image, "pytorch", argv, ports))
        replicas = {"Master": _replica(template, 1)}
        if spec.nodes > 1:
            replicas["Worker"] = _replica(template, spec.nodes - 1)
        body = {"runPolicy": run_policy, "nprocPerNode": str(spec.procs_per_node), "pytorchReplicaSpecs": replicas}
    elif kind == "TFJob":
        ports = [{"name": "tfjob-port", "containerPort": 2222}]
        template = pod_template(run, settings, container(run, settings, image, "tensorflow", argv, ports))
        replicas = {"Chief": _replica(template, 1)}
        if spec.nodes > 1:
            replicas["Worker"] = _replica(template, spec.nodes - 1)
        body = {"runPolicy": run_policy, "tfReplicaSpecs": replicas}
    elif kind == "MPIJob":
        launcher = pod_template(run, settings, container(run, settings, image, "mpi", argv))
        # the launcher starts the ranks with `kubectl exec` as the operator's launcher service
        # account (allowed only pods/exec on this job's workers): it keeps that token
        del launcher["spec"]["automountServiceAccountToken"]
        # the launcher starts the ranks on the workers; the workers only wait for it
        worker = pod_template(run, settings, container(run, settings, image, "mpi", ["sleep", "infinity"]))
        body = {
            "runPolicy": run_policy,
            "slotsPerWorker": spec.procs_per_node,
            "mpiReplicaSpecs": {"Launcher": _replica(launcher, 1), "Worker": _replica(worker, spec.nodes)},
        }
    else:  # TrainJob: the runtime's pod template, the trainer's image, command and resources
        main = container(run, settings, image, "node", argv)
        trainer = {"image": image, "command": argv, "numNodes": spec.nodes, "env": main["env"]}
        if spec.procs_per_node > 1:
            trainer["numProcPerNode"] = spec.procs_per_node
        if main["resources"]:
            trainer["resourcesPerNode"] = main["resources"]
        body = {
            "runtimeRef": {"name": spec.runtime, "kind": "ClusterTrainingRuntime", "apiGroup": "trainer.kubeflow.org"},
            "trainer": trainer,
            "runtimePatches": [trainjob_patch(run, settings, main)],
        }
        if spec.max_runtime:
            body["activeDeadlineSeconds"] = spec.max_runtime
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": body}
