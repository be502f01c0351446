import copy
import os

import pytest
import yaml

from kubestudio.quantities import format_bytes, parse_bytes, parse_cpu
from kubestudio.spawner.profiles import CatalogError, load_catalog, load_catalog_cached, parse_catalog

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CATALOG = os.path.join(REPO, "profiles", "default.yaml")

GOOD = {
    "profiles": [
        {"slug": "cpu", "display_name": "CPU", "default": True, "cpu": {"guarantee": "500m", "limit": 2}},
        {
            "slug": "gpu",
            "ide": ["jupyterlab", "vscode"],
            "images": [
                "quay.io/jupyter/pytorch-notebook:cuda12",
                {"name": "tf", "image": "tensorflow/tensorflow:2.17.0-gpu"},
            ],
            "memory": {"guarantee": "8G", "limit": "16Gi"},
            "gpu": {"count": [1, 2], "type": "A100"},
            "shm": "2G",
            "projects": ["vision"],
        },
    ]
}


def errors_of(data):
    with pytest.raises(CatalogError) as e:
        parse_catalog(data, source="profiles/test.yaml")
    return e.value.errors, str(e.value)


def test_default_catalog_is_valid():
    catalog = load_catalog(DEFAULT_CATALOG)
    assert catalog.default.slug == "cpu-small"
    assert {p.slug for p in catalog.profiles} >= {"cpu-small", "gpu", "vscode"}


def test_parse_good_catalog():
    catalog = parse_catalog(GOOD)
    cpu, gpu = catalog.profiles
    assert catalog.default is cpu
    assert cpu.cpu_guarantee == 0.5 and cpu.cpu_limit == 2.0
    assert cpu.gpu_counts == (0,) and cpu.ides == ("jupyterlab",)
    assert gpu.ides == ("jupyterlab", "vscode")
    assert [i.name for i in gpu.images] == ["pytorch-notebook:cuda12", "tf"]
    assert gpu.mem_limit == 16 * 1024**3
    assert gpu.gpu_counts == (1, 2) and gpu.default_gpus == 1 and gpu.gpu_type == "A100"
    assert gpu.gpu_resource == "nvidia.com/gpu"
    assert gpu.allows_project("vision") and not gpu.allows_project("public")
    assert "1/2 A100 GPU" in gpu.summary()


def test_error_message_names_file_path_and_reason():
    data = copy.deepcopy(GOOD)
    data["profiles"].append({"slug": "bad", "gpu": {"count": -1}})
    errors, message = errors_of(data)
    assert errors == ["profiles[2].gpu.count: must be an integer >= 0"]
    assert message == "profiles/test.yaml: profiles[2].gpu.count: must be an integer >= 0"


@pytest.mark.parametrize(
    "profile, expected",
    [
        ({"display_name": "x"}, "profiles[0].slug: is required"),
        ({"slug": "Bad Slug"}, "profiles[0].slug: must be lowercase letters"),
        ({"slug": "a", "gpus": 1}, "profiles[0].gpus: unknown key"),
        ({"slug": "a", "ide": "emacs"}, "profiles[0].ide: unknown IDE 'emacs'"),
        (
            {"slug": "a", "cpu": {"guarantee": 4, "limit": 2}},
            "profiles[0].cpu.guarantee: must not be more than the limit",
        ),
        ({"slug": "a", "memory": {"limit": "lots"}}, "profiles[0].memory.limit: must be a size like 4G"),
        ({"slug": "a", "cpu": -1}, "profiles[0].cpu: must be > 0"),
        ({"slug": "a", "gpu": {"count": [1, 1]}}, "profiles[0].gpu.count[1]: duplicate count 1"),
        ({"slug": "a", "gpu": {"count": "two"}}, "profiles[0].gpu.count: must be an integer >= 0"),
        (
            {"slug": "a", "gpu": {"count": 1, "resource": "gpu"}},
            "profiles[0].gpu.resource: must be an extended resource name",
        ),
        ({"slug": "a", "images": []}, "profiles[0].images: must be a non-empty list"),
        ({"slug": "a", "images": [{"name": "x"}]}, "profiles[0].images[0].image: is required"),
        ({"slug": "a", "images": ["a b"]}, "profiles[0].images[0].image: must not contain spaces"),
        ({"slug": "a", "default": "yes"}, "profiles[0].default: must be true or false"),
        ({"slug": "a", "shm": "big"}, "profiles[0].shm: must be a size"),
        ({"slug": "a", "projects": "vision"}, "profiles[0].projects: must be a list"),
        ("cpu", "profiles[0]: must be a mapping"),
    ],
)
def test_bad_fields(profile, expected):
    errors, _ = errors_of({"profiles": [profile]})
    assert any(e.startswith(expected) for e in errors), errors


def test_all_errors_reported_together():
    errors, _ = errors_of(
        {
            "profiles": [
                {"slug": "a", "default": True},
                {"slug": "a", "default": True},
                {"slug": "b", "gpu": {"count": -2}, "ide": "nano"},
            ]
        }
    )
    assert "profiles[1].slug: duplicate slug 'a' (also profiles[0])" in errors
    assert "profiles[2].gpu.count: must be an integer >= 0" in errors
    assert any(e.startswith("profiles[2].ide") for e in errors)


@pytest.mark.parametrize("data", [None, [], {"profiles": []}, {"profiles": "cpu"}, {"profile": []}])
def test_bad_top_level(data):
    errors, _ = errors_of(data)
    assert errors


def test_load_catalog_file_errors(tmp_path):
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(str(bad))


def test_cached_catalog_rereads_on_change(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"profiles": [{"slug": "one"}]}))
    assert load_catalog_cached(str(path)).profiles[0].slug == "one"
    path.write_text(yaml.safe_dump({"profiles": [{"slug": "two"}]}))
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert load_catalog_cached(str(path)).profiles[0].slug == "two"


@pytest.mark.parametrize(
    "text, value",
    [
        ("4G", 4 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1Gi", 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        (1024, 1024),
        ("100", 100),
    ],
)
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["lots", "-1G", "", True, [4]])
def test_parse_bytes_bad(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_parse_cpu_and_format():
    assert parse_cpu("500m") == 0.5
    assert parse_cpu(2) == 2.0
    assert format_bytes(4 * 1024**3) == "4G" and format_bytes(int(1.5 * 1024**3)) == "1.5G"
    for bad in ("0", "x", 0, True):
        with pytest.raises(ValueError):
            parse_cpu(bad)
