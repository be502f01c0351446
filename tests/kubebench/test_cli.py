"""`python -m kubestudio.testing.kubebench up` runs a bench until stopped and cleans up."""

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from kubestudio.testing.kubebench import binaries_present
from kubestudio.testing.kubebench.bench import adapt_crd_for_1_20, load_nodes
from kubestudio.testing.wait import wait_for


def test_up_writes_kubeconfig_and_tears_down(tmp_path):
    if not binaries_present():
        pytest.fail("the bench's control plane is not built: python -m kubestudio.testing.kubebench build")
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        yaml.safe_dump(
            {
                "nodes": [
                    {
                        "name": "w",
                        "count": 2,
                        "labels": {"pool": "w"},
                        "capacity": {"cpu": 4, "memory": "8Gi", "example.com/fpga": 2},
                    }
                ]
            }
        )
    )
    kubeconfig = tmp_path / "out.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubestudio.testing.kubebench",
            "up",
            "--nodes",
            str(nodes),
            "--kubeconfig",
            str(kubeconfig),
            "--no-crds",
            "--root",
            str(tmp_path / "root"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(_read_json(proc))
        assert info["nodes"] == ["w-0", "w-1"]
        out = subprocess.run(
            [_kubectl(), "--kubeconfig", str(kubeconfig), "get", "nodes", "-l", "pool=w", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        items = json.loads(out.stdout)["items"]
        assert sorted(n["metadata"]["name"] for n in items) == ["w-0", "w-1"]
        assert items[0]["status"]["allocatable"]["example.com/fpga"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    # nothing of the bench is left listening
    wait_for(
        lambda: not subprocess.run(["pgrep", "-f", str(tmp_path / "root")], capture_output=True).stdout,
        timeout=15,
        what="every process of the bench gone",
    )


def _kubectl():
    from kubestudio.testing.kubebench import default_cache_dir

    return os.path.join(default_cache_dir(), "bin", "kubectl")


def _read_json(proc):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            return "".join(lines)
    raise RuntimeError(proc.stderr.read())


def test_load_nodes_counts_and_unique_names():
    nodes = load_nodes([{"name": "a", "count": 3}, {"name": "b"}])
    assert [n["name"] for n in nodes] == ["a-0", "a-1", "a-2", "b"]
    with pytest.raises(ValueError, match="unique"):
        load_nodes([{"name": "a"}, {"name": "a"}])


def test_crd_adaptation_for_1_20():
    crd = {
        "spec": {
            "versions": [
                {
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-validations": [{"rule": "self.a > 0"}],
                                    "properties": {
                                        "name": {"type": "string", "default": ""},
                                        "secrets": {
                                            "type": "array",
                                            "x-kubernetes-list-type": "map",
                                            "x-kubernetes-list-map-keys": ["name"],
                                            "items": {
                                                "type": "object",
                                                "properties": {"name": {"type": "string", "default": ""}},
                                            },
                                        },
                                    },
                                }
                            },
                        }
                    }
                }
            ]
        }
    }
    adapted, removed = adapt_crd_for_1_20(crd)
    spec = adapted["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "x-kubernetes-validations" not in spec
    assert "default" not in spec["properties"]["name"]
    assert spec["properties"]["secrets"]["items"]["required"] == ["name"]
    assert removed == {"x-kubernetes-validations": 1, 'default: ""': 2, "list-map key made required": 1}
    assert "x-kubernetes-validations" in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_without_the_crd_schemas_the_reason_is_given(tmp_path, monkeypatch):
    from kubestudio.testing.kubebench.bench import crds_missing_reason

    monkeypatch.setenv("KUBESTUDIO_CRDS_DIR", str(tmp_path))
    reason = crds_missing_reason()
    assert f"no *.yaml in {tmp_path}" in reason and "KUBESTUDIO_CRDS_DIR" in reason
    (tmp_path / "x.yaml").write_text("kind: CustomResourceDefinition\n")
    assert crds_missing_reason() is None
