"""Pipelines written in Python compile to the same spec as the YAML (and the CLI writes it)."""

import io
import json
import re

import pytest
import yaml

from kubestudio.extensions import cli
from kubestudio.jobs.pipelines.spec import parse_pipeline
from kubestudio.pipelines import Output, pipeline, task

SOURCE = """
from kubestudio.pipelines import Output, pipeline, task


@task()
def prepare(rows: int, data: Output):
    with open(data, "w") as f:
        f.write("\\n".join(str(i) for i in range(rows)))


@task(gpus=1, retries=2, timeout="10m")
def train(data: str, model: Output, epochs: int = 3, mode: str = "fast"):
    numbers = [int(x) for x in open(data).read().split()]
    with open(model, "w") as f:
        f.write(f"{sum(numbers) * epochs} {mode}")


@task()
def report(model: str):
    print("model", open(model).read())


@pipeline(name="nightly", params={"rows": 4, "mode": "slow"})
def nightly(rows, mode):
    p = prepare(rows=rows)
    t = train(data=p.outputs["data"], epochs=2, mode=mode)
    report(model=t.outputs["model"])
    report(model=t.outputs["model"]).after(p)
"""


def load(tmp_path):
    path = tmp_path / "flow.py"
    path.write_text(SOURCE)
    namespace = {}
    exec(compile(SOURCE, str(path), "exec"), namespace)
    return path, namespace["nightly"]


def test_a_python_pipeline_compiles_to_the_spec(tmp_path):
    _, nightly = load(tmp_path)
    spec = nightly.compile()
    assert spec["name"] == "nightly" and spec["params"] == {"rows": 4, "mode": "slow"}
    assert list(spec["tasks"]) == ["prepare", "train", "report", "report-2"]
    train = spec["tasks"]["train"]
    assert train["depends"] == ["prepare"] and train["retries"] == 2 and train["timeout"] == "10m"
    assert train["job"]["resources"] == {"gpu": 1}
    assert train["outputs"] == {"model": "runs/{{run}}/train/model"}
    assert spec["tasks"]["report-2"]["depends"] == ["train", "prepare"]
    command = train["job"]["command"]
    assert command[:2] == ["python", "-c"] and "@task" not in command[2] and "def train(" in command[2]
    # the arguments: params and outputs filled in by the run; a string param quoted, a number not
    assert command[3] == (
        '{"data": "{{tasks.prepare.outputs.data}}", "epochs": 2, "mode": "{{params.mode}}", "model": "{{outputs.model}}"}'
    )
    filled = re.sub(r"\{\{[^}]+\}\}", "x", command[3])
    assert json.loads(filled)["epochs"] == 2
    assert parse_pipeline(spec).order() == ["prepare", "train", "report", "report-2"]
    # outside a pipeline a task is the plain function
    out = tmp_path / "rows.txt"
    nightly_prepare = load(tmp_path)[1].func.__globals__["prepare"]
    nightly_prepare(rows=2, data=str(out))
    assert out.read_text() == "0\n1"


def test_outputs_are_not_arguments():
    @task()
    def make(thing: Output):
        pass

    @pipeline(name="bad")
    def bad():
        make(thing="here.txt")

    with pytest.raises(TypeError, match="thing is an output"):
        bad.compile()


def test_the_cli_writes_the_yaml(tmp_path):
    path, nightly = load(tmp_path)
    out = io.StringIO()
    target = tmp_path / "nightly.yaml"
    assert cli.main(["pipelines", "compile", f"{path}:nightly", "-o", str(target)], out=out) == 0, out.getvalue()
    assert yaml.safe_load(target.read_text()) == nightly.compile()
    assert cli.main(["pipelines", "compile", f"{path}:missing"], out=out) == 2
    assert "name one @pipeline as FILE.py:NAME (found: nightly)" in out.getvalue()


def test_output_annotation_is_a_str():
    assert isinstance(Output("x"), str)


def test_the_cache_compiles_for_the_pipeline_and_each_task():
    @task(inputs=["data/raw.csv"])
    def clean(out: Output):
        pass

    @task(cache="off")
    def publish(model: str):
        pass

    @pipeline(name="cached", cache="auto")
    def cached():
        publish(model=clean().outputs["out"])

    spec = cached.compile()
    assert spec["cache"] == "auto" and spec["tasks"]["clean"]["inputs"] == ["data/raw.csv"]
    assert spec["tasks"]["publish"]["cache"] == "off" and "cache" not in spec["tasks"]["clean"]

    @pipeline(name="bad", cache="yes")
    def bad():
        clean()

    with pytest.raises(Exception, match="cache: auto .* or off, not 'yes'"):
        bad.compile()
