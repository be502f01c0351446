import pytest

from kubestudio.spawner.profiles import parse_catalog
from kubestudio.spawner.projects import Project, user_projects
from kubestudio.spawner.request import SpawnRefused, check_quota, options_from_formdata, resolve_request

CATALOG = parse_catalog(
    {
        "profiles": [
            {"slug": "cpu", "default": True, "ide": ["jupyterlab", "vscode"]},
            {
                "slug": "gpu",
                "images": [{"name": "torch", "image": "pytorch:1"}, {"name": "tf", "image": "tf:2"}],
                "gpu": {"count": [1, 2]},
            },
            {"slug": "a100", "gpu": {"count": 1, "type": "A100"}, "projects": ["vision"]},
        ]
    }
)


class Group:
    def __init__(self, name, properties=None):
        self.name, self.properties = name, properties or {}


PROJECTS = user_projects([Group("vision", {"max_gpus": 2}), Group("broken", {"volume_mount": "x(nfs):/x"})])


def resolve(options, **kw):
    return resolve_request(options, CATALOG, PROJECTS, **kw)


def refused(options, **kw):
    with pytest.raises(SpawnRefused) as e:
        resolve(options, **kw)
    return e.value


def test_empty_options_take_defaults():
    request = resolve({})
    assert request.profile.slug == "cpu"
    assert request.project.name == "public"
    assert request.ide == "jupyterlab" and request.gpus == 0 and request.image is None
    assert request.as_options() == {"profile": "cpu", "project": "public", "ide": "jupyterlab", "gpus": 0}


def test_full_choice():
    request = resolve({"profile": "gpu", "project": "vision", "image": "tf", "gpus": "2"})
    assert request.image.image == "tf:2" and request.gpus == 2 and request.project.max_gpus == 2


@pytest.mark.parametrize(
    "options, field, status",
    [
        ({"profile": "huge"}, "profile: unknown profile 'huge' (available: cpu, gpu, a100)", 400),
        ({"project": "finance"}, "project: you are not a member of project 'finance'", 403),
        ({"project": "broken"}, "project: project 'broken': volume_mount entry", 400),
        ({"profile": "a100"}, "profile: 'a100' is not available in project 'public'", 403),
        ({"profile": "gpu", "gpus": 3}, "gpus: profile 'gpu' offers 1 or 2 GPUs, not 3", 400),
        ({"profile": "gpu", "gpus": "two"}, "gpus: must be a whole number", 400),
        ({"profile": "gpu", "gpus": True}, "gpus: must be a whole number", 400),
        ({"profile": "cpu", "gpus": 1}, "gpus: profile 'cpu' offers 0 GPUs, not 1", 400),
        ({"profile": "gpu", "image": "jax"}, "image: profile 'gpu' has no image 'jax' (choices: torch, tf)", 400),
        ({"profile": "cpu", "image": "x"}, "image: profile 'cpu' offers no image choice", 400),
        ({"profile": "gpu", "ide": "vscode"}, "ide: profile 'gpu' offers jupyterlab, not 'vscode'", 400),
        ({"gpu": 1}, "gpu: unknown option", 400),
        ({"profile": ["cpu"]}, "profile: unknown profile", 400),
    ],
)
def test_refusals_name_the_field(options, field, status):
    error = refused(options)
    assert str(error).startswith(field), str(error)
    assert error.status == status


def test_unavailable_profile_and_ide():
    error = refused({"profile": "gpu"}, profile_unavailable={"gpu": "this machine has no GPU"})
    assert str(error) == "profile: 'gpu' cannot start here: this machine has no GPU"
    assert error.status == 409
    error = refused({"ide": "vscode"}, ide_unavailable={"vscode": "code-server is not installed"})
    assert str(error) == "ide: VS Code cannot start here: code-server is not installed"


def test_quota():
    project = Project(name="vision", max_gpus=4, max_servers=2)
    check_quota(project, 2, servers_in_use=1, gpus_in_use=2)
    with pytest.raises(SpawnRefused, match=r"project: 'vision' allows 2 running servers per user and you have 2"):
        check_quota(project, 0, servers_in_use=2, gpus_in_use=0)
    with pytest.raises(
        SpawnRefused, match=r"gpus: project 'vision' allows 4 GPUs per user; you hold 3 and asked for 2"
    ):
        check_quota(project, 2, servers_in_use=1, gpus_in_use=3)
    check_quota(Project(name="public"), 8, servers_in_use=50, gpus_in_use=50)


def test_options_from_formdata_keeps_only_chosen_profile_fields():
    formdata = {
        "profile": ["gpu"],
        "project": ["vision"],
        "ide-cpu": ["vscode"],
        "image-gpu": ["tf"],
        "gpus-gpu": ["2"],
        "_xsrf": ["x"],
    }
    assert options_from_formdata(formdata) == {"profile": "gpu", "project": "vision", "image": "tf", "gpus": "2"}
    assert options_from_formdata({}) == {}


def test_custom_images_only_under_the_users_prefix():
    catalog = parse_catalog(
        {
            "profiles": [
                {"slug": "own", "custom_images": True, "images": ["base:1"]},
                {"slug": "fixed", "images": ["base:1"]},
            ]
        }
    )
    prefix = "registry.example.org:5000/kubestudio/alice/"
    mine = prefix + "trainer:0.3"
    request = resolve_request({"profile": "own", "image": mine}, catalog, PROJECTS, custom_image_prefix=prefix)
    assert request.image.image == mine and request.image.display_name == "trainer:0.3"
    assert resolve_request({"profile": "own"}, catalog, PROJECTS, custom_image_prefix=prefix).image.image == "base:1"
    for image in (
        "registry.example.org:5000/kubestudio/bob/trainer:1",
        prefix + "../bob/x:1",
        prefix + "Bad Name",
        "docker.io/library/ubuntu:24.04",
    ):
        with pytest.raises(SpawnRefused, match="one of your images under"):
            resolve_request({"profile": "own", "image": image}, catalog, PROJECTS, custom_image_prefix=prefix)
    # a profile without custom_images never takes one
    with pytest.raises(SpawnRefused) as e:
        resolve_request({"profile": "fixed", "image": mine}, catalog, PROJECTS, custom_image_prefix=prefix)
    assert "your images" not in str(e.value)
