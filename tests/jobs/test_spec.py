"""The job spec: every refusal names its field; what is accepted round-trips through the store."""

import pytest

from kubestudio.jobs.spec import Gpus, JobSpec, SpecError, parse_spec, replica_names, spec_from_json

LIMITS = {"max_nodes": 8, "max_procs_per_node": 8, "max_runtime": 86400, "max_retries": 3}


def test_a_full_spec_round_trips():
    spec = parse_spec(
        {
            "name": "mnist",
            "script": "train.py",
            "args": "--lr 0.1 --name 'a b'",
            "nodes": 2,
            "procs_per_node": "2",
            "resources": {"cpu": 4, "memory": "16Gi", "gpu": "1(A100)"},
            "env": {"SEED": 7},
            "packages": "numpy==2.1 rich",
            "max_runtime": "2h",
            "retries": 1,
            "ttl_after_finished": "1d",
            "project": "vision",
        },
        LIMITS,
    )
    assert spec.args == ("--lr", "0.1", "--name", "a b") and spec.procs_per_node == 2
    assert spec.resources.gpu == Gpus(count=1, type="A100") and spec.resources.cpu == "4"
    assert spec.env == {"SEED": "7"} and spec.packages == ("numpy==2.1", "rich")
    assert spec.max_runtime == 7200 and spec.ttl_after_finished == 86400 and spec.kind == "pytorch"
    assert spec_from_json(spec.to_json()) == spec
    assert spec.argv("py", "/mnt/alice/train.py") == ["py", "/mnt/alice/train.py", "--lr", "0.1", "--name", "a b"]


def test_gpu_forms_and_mig():
    gpu = lambda value: parse_spec({"name": "g", "script": "t.py", "resources": {"gpu": value}}).resources.gpu  # noqa: E731
    assert gpu(2) == Gpus(count=2) and gpu("2") == Gpus(count=2) and gpu("1(V100)") == Gpus(1, "V100")
    assert gpu({"count": 1, "resource": "nvidia.com/mig-1g.10gb"}) == Gpus(1, None, "nvidia.com/mig-1g.10gb")


@pytest.mark.parametrize(
    "body, words",
    [
        ([], "the job spec must be a JSON object"),
        ({"script": "t.py"}, "name: required"),
        ({"name": "x" * 41, "script": "t.py"}, "name: lower-case letters"),
        ({"name": "x", "script": "t.py", "command": "ls"}, "command: give either command"),
        ({"name": "x", "command": "ls", "args": ["-l"]}, "args: only with script"),
        ({"name": "x", "command": "echo 'unclosed"}, "command: cannot be split into words"),
        ({"name": "x", "command": "!\\"}, "command: cannot be split into words"),
        ({"name": "x", "command": [1, 2]}, "command: must be a list of strings"),
        ({"name": "x", "script": "/etc/passwd"}, "script: must be a path inside your workspace"),
        ({"name": "x", "script": "t.py", "working_dir": "a/../../b"}, "working_dir: must be a path inside"),
        ({"name": "x", "script": "t.py", "nodes": 0}, "nodes: must be at least 1"),
        ({"name": "x", "script": "t.py", "nodes": True}, "nodes: must be a whole number"),
        ({"name": "x", "script": "t.py", "procs_per_node": 9}, "procs_per_node: at most 8"),
        ({"name": "x", "script": "t.py", "framework": "jax"}, "framework: must be one of"),
        ({"name": "x", "script": "t.py", "framework": "python", "nodes": 2}, "framework: python runs one process"),
        ({"name": "x", "script": "t.py", "runtime": "torch"}, "runtime: only with framework trainjob"),
        ({"name": "x", "script": "t.py", "resources": {"gpu": -1}}, "resources.gpu.count: must be at least 0"),
        (
            {"name": "x", "script": "t.py", "resources": {"gpu": {"count": 1, "model": "A100"}}},
            "resources.gpu.model: unknown field",
        ),
        (
            {"name": "x", "script": "t.py", "resources": {"gpu": {"count": 1, "resource": "Not A Resource"}}},
            "resources.gpu.resource:",
        ),
        ({"name": "x", "script": "t.py", "resources": {"cpu": "lots"}}, "resources.cpu: must be cores"),
        ({"name": "x", "script": "t.py", "resources": {"memory": "16 gigs"}}, "resources.memory: must be a size"),
        ({"name": "x", "script": "t.py", "resources": {"disk": "1Gi"}}, "resources.disk: unknown field"),
        ({"name": "x", "script": "t.py", "env": {"1BAD": "x"}}, "env.1BAD: not a valid variable name"),
        ({"name": "x", "script": "t.py", "env": {"PET_NNODES": "3"}}, "env.PET_NNODES: set by the jobs service"),
        ({"name": "x", "script": "t.py", "env": {"A": ["x"]}}, "env.A: must be a string or a number"),
        ({"name": "x", "script": "t.py", "max_runtime": "3 weeks"}, "max_runtime: must be seconds or a duration"),
        ({"name": "x", "script": "t.py", "max_runtime": "2d"}, "max_runtime: at most 86400 s"),
        ({"name": "x", "script": "t.py", "retries": 4}, "retries: at most 3"),
        ({"name": "x", "script": "t.py", "image": "has space:tag"}, "image: not a valid image reference"),
    ],
)
def test_refusals_name_the_field(body, words):
    with pytest.raises(SpecError) as e:
        parse_spec(body, LIMITS)
    assert words in str(e.value) and e.value.status == 400


def test_replica_names_follow_the_operators():
    names = lambda **kw: replica_names(JobSpec(name="n", script="t.py", **kw))  # noqa: E731
    assert names() == ["rank-0"]
    assert names(nodes=3, framework="pytorch") == ["master-0", "worker-0", "worker-1"]
    assert names(nodes=2, framework="tensorflow") == ["chief-0", "worker-0"]
    assert names(nodes=2, framework="mpi") == ["worker-0", "worker-1"]
    assert names(nodes=2, procs_per_node=2, framework="trainjob", runtime="torch-distributed") == [
        "node-0:0",
        "node-0:1",
        "node-1:0",
        "node-1:1",
    ]
