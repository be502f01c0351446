import pytest

from kubestudio.spawner.projects import (
    PUBLIC_PROJECT,
    ProjectError,
    VolumeMount,
    parse_node_selector,
    parse_project,
    parse_tolerations,
    parse_volume_mounts,
    user_projects,
)


class Group:
    def __init__(self, name, properties=None):
        self.name = name
        self.properties = properties or {}


# ---------------------------------------------------------------- volume_mount


def test_volume_mount_cube_studio_example():
    mounts = parse_volume_mounts("kubeflow-user-workspace(pvc):/mnt/;data/aidata(hostpath):/aidata;4G(memory):/dev/shm")
    assert mounts == (
        VolumeMount("pvc", "kubeflow-user-workspace", "/mnt"),
        VolumeMount("hostpath", "/data/aidata", "/aidata"),
        VolumeMount("memory", "", "/dev/shm", size=4 * 1024**3),
    )


def test_volume_mount_every_kind_and_comma_separator():
    mounts = parse_volume_mounts(
        "models(pvc):/models,/srv/data(hostpath):/data,512M(memory):/dev/shm,"
        "train-config(configmap):/etc/train,registry-auth(secret):/secrets/registry"
    )
    assert [m.kind for m in mounts] == ["pvc", "hostpath", "memory", "configmap", "secret"]
    assert mounts[1].source == "/srv/data"
    assert mounts[2].size == 512 * 1024**2
    assert mounts[3].source == "train-config" and mounts[3].mount_path == "/etc/train"
    assert str(mounts[0]) == "models(pvc):/models"


def test_volume_mount_kind_case_and_spaces_and_list():
    mounts = parse_volume_mounts([" models(PVC):/models ", "cfg(ConfigMap):/cfg"])
    assert [m.kind for m in mounts] == ["pvc", "configmap"]


def test_volume_mount_empty_entries_ignored():
    assert parse_volume_mounts("") == ()
    assert parse_volume_mounts(None) == ()
    assert len(parse_volume_mounts("a(pvc):/a;;")) == 1


@pytest.mark.parametrize(
    "value, reason",
    [
        ("models(nfs):/models", "unknown volume kind 'nfs'"),
        ("models:/models", "expected source(kind):/mount/path"),
        ("models(pvc)", "expected source(kind):/mount/path"),
        ("models(pvc):models", "mount path must be absolute"),
        ("models(pvc):/a/../etc", "must not contain '..'"),
        ("models(pvc):/", "cannot mount over /"),
        ("Models_X(pvc):/m", "not a valid pvc name"),
        ("lots(memory):/dev/shm", "memory size must be a size"),
        ("../etc(hostpath):/etc", "host path must name a folder"),
        ("a(pvc):/x;b(pvc):/x/", "mount path /x is already used"),
        ("bad name(secret):/s", "not a valid secret name"),
    ],
)
def test_volume_mount_malformed(value, reason):
    with pytest.raises(ValueError) as e:
        parse_volume_mounts(value)
    assert reason in str(e.value)
    assert "volume_mount entry" in str(e.value)


# ---------------------------------------------------------------- node_selector


def test_node_selector_string_and_dict():
    assert parse_node_selector("org=public") == {"org": "public"}
    assert parse_node_selector("org=vision, gpu-type=A100") == {"org": "vision", "gpu-type": "A100"}
    assert parse_node_selector({"kubernetes.io/arch": "amd64"}) == {"kubernetes.io/arch": "amd64"}
    assert parse_node_selector("") == {}
    assert parse_node_selector("zone=") == {"zone": ""}


@pytest.mark.parametrize(
    "value, reason",
    [
        ("org", "expected key=value"),
        ("org=a b", "not a valid label value"),
        ("-bad=x", "not a valid label key"),
        ({"org": 3}, "not a valid label value"),
        (42, "must be 'key=value,...' or a mapping"),
    ],
)
def test_node_selector_malformed(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_node_selector(value)


# ---------------------------------------------------------------- tolerations


def test_tolerations_string_forms():
    assert parse_tolerations("gpu=true:NoSchedule, dedicated:NoExecute, spot") == (
        {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
        {"key": "spot", "operator": "Exists"},
    )


def test_tolerations_list_form():
    tol = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert parse_tolerations(tol) == tuple(tol)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("gpu=true:Sometimes", "effect must be one of"),
        ([{"key": "a", "operator": "In"}], "operator must be Equal or Exists"),
        ([{"key": "a", "colour": "red"}], "unknown field 'colour'"),
        ([{"operator": "Equal", "value": "x"}], "an empty key needs operator Exists"),
        ([{"key": "a", "tolerationSeconds": 30, "effect": "NoSchedule"}], "only applies to effect NoExecute"),
        (["gpu"], "must be a mapping"),
    ],
)
def test_tolerations_malformed(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_tolerations(value)


# ---------------------------------------------------------------- projects


def test_parse_project_all_settings():
    project = parse_project(
        "vision",
        {
            "display_name": "Vision",
            "node_selector": "org=vision",
            "tolerations": "gpu=true:NoSchedule",
            "volume_mount": "datasets(pvc):/datasets;8G(memory):/dev/shm",
            "max_gpus": 4,
            "max_servers": "2",
            "profiles": "cpu-small, gpu",
            "owner_email": "team@example.org",  # other settings are allowed
        },
    )
    assert project.label == "Vision"
    assert project.node_selector == {"org": "vision"}
    assert project.max_gpus == 4 and project.max_servers == 2
    assert project.profiles == ("cpu-small", "gpu")
    assert project.allows_profile("gpu") and not project.allows_profile("cpu-large")
    assert len(project.volume_mounts) == 2


def test_parse_project_errors_name_project_entry_reason():
    with pytest.raises(ProjectError) as e:
        parse_project("vision", {"volume_mount": "datasets(pvc):/datasets;x(nfs):/x"})
    assert str(e.value) == (
        "project 'vision': volume_mount entry 'x(nfs):/x': unknown volume kind 'nfs' "
        "(expected one of: pvc, hostpath, memory, configmap, secret)"
    )


@pytest.mark.parametrize(
    "properties, reason",
    [
        ({"max_gpus": -1}, "max_gpus: must be an integer >= 0"),
        ({"max_servers": "many"}, "max_servers: must be an integer >= 0"),
        ({"max_gpu": 2}, "did you mean 'max_gpus'"),
        ({"nodeselector": "a=b"}, "did you mean 'node_selector'"),
        ({"profiles": [1, 2]}, "profiles: must be a list"),
        ("oops", "properties must be a mapping"),
    ],
)
def test_parse_project_bad_settings(properties, reason):
    with pytest.raises(ProjectError, match=reason):
        parse_project("p", properties)


def test_user_projects_public_always_first_and_errors_kept():
    projects = user_projects([Group("zeta"), Group("broken", {"max_gpus": "x"}), Group("alpha")])
    assert list(projects) == [PUBLIC_PROJECT, "alpha", "broken", "zeta"]
    assert isinstance(projects["broken"], ProjectError)
    assert projects[PUBLIC_PROJECT].name == PUBLIC_PROJECT


def test_user_projects_keeps_public_group_properties():
    projects = user_projects([Group(PUBLIC_PROJECT, {"max_servers": 1})])
    assert projects[PUBLIC_PROJECT].max_servers == 1
