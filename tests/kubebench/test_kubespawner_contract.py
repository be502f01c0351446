"""WorkspaceSpawner keeps KubeSpawner's contract (issue 12): a zero-to-jupyterhub admin's
configuration works unchanged, with KubeStudio's workspace and projects on top.

The configurations are shaped like the ones in the z2jh and KubeSpawner documentation: a
``profile_list`` with ``kubespawner_override``, ``profile_options`` with ``unlisted_choice``, a
callable override, dynamic per-user claims, and spawner settings an admin tuned. Each test
spawns through a real hub and proxy on the bench and reads the pod the apiserver holds.
"""

import json
import os
import re
import sqlite3
import threading
import time

import pytest
import yaml
from kubespawner.slugs import escape_slug, safe_slug

from kubestudio.quantities import format_bytes
from kubestudio.testing.imageshub import ensure_claims
from kubestudio.testing.localhub import SERVERS_ONLY, LocalHub, browser_login

from .test_workspace_spawner import CATALOG, pod

Z2JH_IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"
DATASCIENCE = "quay.io/jupyter/datascience-notebook:2025-01-06"
SIX_G = str(6 * 1024**3)  # JupyterHub reads "6G" as GiB, as KubeSpawner sends it
PYTORCH = "quay.io/jupyter/pytorch-notebook:2025-01-06"

# the admin's own settings, as a z2jh values file's hub.extraConfig would write them
ADMIN = (
    f"""
import os
c.KubeSpawner.namespace = "default"
c.KubeSpawner.args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.http_timeout = 90
c.KubeSpawner.delete_grace_period = 2
c.KubeSpawner.image = "{Z2JH_IMAGE}"
c.KubeSpawner.cpu_limit = 3
c.KubeSpawner.mem_limit = "6G"
c.KubeSpawner.default_url = "/tree"
c.KubeSpawner.privileged = True
c.KubeSpawner.allow_privilege_escalation = True  # the apiserver refuses privileged without it
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.uid = None
"""
    + """
c.KubeSpawner.environment = {"TEAM": "ml"}


def record_environment(spawner, pod):
    # what an admin's hook sees of spawner.environment once the profile is applied
    pod.metadata.annotations = {**(pod.metadata.annotations or {}),
                                "test/environment": ",".join(sorted(spawner.environment))}
    return pod


c.KubeSpawner.modify_pod_hook = record_environment
"""
)

PROFILE_LIST = f"""
c.KubeSpawner.profile_list = [
    {{
        "display_name": "Datascience environment",
        "slug": "training-datascience",
        "description": "If you want the additional bells and whistles: Python, R, and Julia.",
        "default": True,
        "kubespawner_override": {{"image": "{DATASCIENCE}"}},
    }},
    {{
        "display_name": "Bigger machine",
        "slug": "bigger",
        "kubespawner_override": {{
            "cpu_limit": 4,
            # the bench reports Running 1.5 s after the Started event, as a kubelet's relist does:
            # the start progress (polled each second) must show the event before "ready"
            "extra_labels": lambda spawner: {{"asked-by": spawner.user.name,
                                              "kubebench.kubestudio.io/status-delay": "1.5"}},
        }},
    }},
    {{
        "display_name": "Pick an image",
        "slug": "pick",
        "profile_options": {{
            "image": {{
                "display_name": "Image",
                "choices": {{
                    "pytorch": {{"display_name": "PyTorch", "kubespawner_override": {{"image": "{PYTORCH}"}}}},
                    "datascience": {{"display_name": "Datascience", "kubespawner_override": {{"image": "{DATASCIENCE}"}}}},
                }},
                "unlisted_choice": {{
                    "enabled": True,
                    "display_name": "Image from quay.io",
                    "validation_regex": "^quay\\\\.io/.+:.+$",
                    "validation_message": "an image from quay.io, with a tag",
                    "kubespawner_override": {{"image": "{{value}}"}},
                }},
            }},
        }},
    }},
    {{
        "display_name": "One A100",
        "slug": "a100",
        "kubespawner_override": {{
            "extra_resource_limits": {{"nvidia.com/gpu": "1"}},
            "node_selector": {{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
        }},
    }},
]
"""

# z2jh's dynamic storage (singleuser.storage.type: dynamic)
DYNAMIC_STORAGE = """
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "claim-{username}{servername}"
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
c.KubeSpawner.volumes = [{"name": "volume-{username}{servername}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "volume-{username}{servername}", "mountPath": "/home/jovyan"}]
"""


def z2jh_hub(bench, root, extra, settings=None):
    ensure_claims(bench)
    return LocalHub(
        root,
        settings={"spawner": "kubernetes", **SERVERS_ONLY, **(settings or {})},
        extra_config=extra,
        env={"KUBECONFIG": bench.kubeconfig},
    )


@pytest.fixture(scope="module")
def z2jh(bench, tmp_path_factory):
    """A z2jh admin's hub: their profile_list, dynamic storage and settings; KubeStudio's own
    catalog is the shipped one, so it yields to the profile_list."""
    hub = z2jh_hub(bench, tmp_path_factory.mktemp("z2jh"), ADMIN + PROFILE_LIST + DYNAMIC_STORAGE).start()
    yield hub
    hub.stop()


def container(manifest):
    return manifest["spec"]["containers"][0]


def env_of(manifest):
    return {e["name"]: e.get("value") for e in container(manifest)["env"]}


def claim(bench, name):
    r = bench.api("GET", f"/api/v1/namespaces/default/persistentvolumeclaims/{name}")
    return r.json() if r.status_code == 200 else None


def mounts_of(manifest):
    volumes = {v["name"]: v for v in manifest["spec"]["volumes"]}
    return {m["mountPath"]: (volumes[m["name"]], m.get("subPath")) for m in container(manifest)["volumeMounts"]}


def test_default_profile_overrides_admin_settings_and_dynamic_storage(bench, z2jh):
    z2jh.create_user("zours")
    try:
        r = z2jh.spawn("zours", "", {}, timeout=120)
        assert r.status_code in (201, 202), r.text
        manifest = pod(bench, "jupyter-zours")
        c = container(manifest)
        # the default profile's override, then the admin's settings, then KubeStudio's
        assert c["image"] == DATASCIENCE
        assert c["resources"]["limits"]["cpu"] == "3" and c["resources"]["limits"]["memory"] == SIX_G
        assert env_of(manifest)["JUPYTERHUB_DEFAULT_URL"] == "/tree"
        assert c["securityContext"]["privileged"] is True and c["securityContext"]["allowPrivilegeEscalation"] is True
        assert "runAsUser" not in c["securityContext"]
        assert manifest["spec"]["automountServiceAccountToken"] is False
        # z2jh's per-user claim is created and mounted; the KubeStudio workspace is there too
        assert claim(bench, "claim-zours")["spec"]["resources"]["requests"]["storage"] == "1Gi"
        mounts = mounts_of(manifest)
        assert mounts["/home/jovyan"][0]["persistentVolumeClaim"]["claimName"] == "claim-zours"
        assert mounts["/mnt/zours"] == (
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "kubestudio-workspace"}},
            "zours",
        )
        assert manifest["metadata"]["labels"]["kubestudio.io/profile"] == "training-datascience"
        # KubeStudio's variables reach the pod, never the admin's environment trait: their hook
        # sees exactly what they configured
        assert manifest["metadata"]["annotations"]["test/environment"] == "TEAM"
        env = env_of(manifest)
        assert env["TEAM"] == "ml" and env["KUBESTUDIO_USER"] == "zours" and "K8S_POD_NAME" in env
    finally:
        z2jh.stop_server("zours")
    # the claim outlives the server and goes with the user, as in KubeSpawner (delete_forever)
    assert claim(bench, "claim-zours") is not None
    assert z2jh.api("DELETE", "/users/zours").status_code == 204
    deadline = time.monotonic() + 30
    while claim(bench, "claim-zours") is not None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert claim(bench, "claim-zours") is None


def test_profile_slug_override_and_callable(bench, z2jh):
    z2jh.create_user("bigs")
    try:
        r = z2jh.spawn("bigs", "", {"profile": "bigger"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        manifest = pod(bench, "jupyter-bigs")
        c = container(manifest)
        assert c["resources"]["limits"]["cpu"] == "4"  # the profile's override wins over the admin's 3
        assert c["image"] == Z2JH_IMAGE  # the profile sets no image: the admin's
        assert manifest["metadata"]["labels"]["asked-by"] == "bigs"  # a callable override
        assert env_of(manifest)["NVIDIA_VISIBLE_DEVICES"] == "none"
    finally:
        z2jh.stop_server("bigs")


def test_profile_options_choice_and_unlisted_choice(bench, z2jh):
    z2jh.create_user("opti")
    try:
        r = z2jh.spawn("opti", "a", {"profile": "pick", "image": "pytorch"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        assert container(pod(bench, "jupyter-opti--a"))["image"] == PYTORCH
        # no choice: the option's default (its first choice)
        r = z2jh.spawn("opti", "b", {"profile": "pick"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        assert container(pod(bench, "jupyter-opti--b"))["image"] == PYTORCH
        own = "quay.io/jupyter/minimal-notebook:2025-01-06"
        r = z2jh.spawn("opti", "c", {"profile": "pick", "image--unlisted-choice": own}, timeout=120)
        assert r.status_code in (201, 202), r.text
        assert container(pod(bench, "jupyter-opti--c"))["image"] == own
    finally:
        for server in ("a", "b", "c"):
            z2jh.stop_server("opti", server)


def test_refusals_name_the_field(bench, z2jh):
    z2jh.create_user("refu")
    cases = [
        (
            {"profile": "pick", "image--unlisted-choice": "docker.io/evil:latest"},
            "profile: Received unlisted_choice for image that failed validation regex.",
        ),
        (
            {"profile": "nope"},
            "profile: No such profile: nope. Options include: training-datascience, bigger, pick, a100",
        ),
        ({"profile": "bigger", "project": "secret"}, "project: you are not a member of project 'secret'"),
    ]
    for options, message in cases:
        r = z2jh.spawn("refu", "", options, wait=False)
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["message"] == message
    assert pod(bench, "jupyter-refu") is None


def test_gpu_profile_is_counted_and_sees_its_gpu(bench, z2jh):
    z2jh.create_user("gpuz")
    try:
        r = z2jh.spawn("gpuz", "", {"profile": "a100"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        manifest = pod(bench, "jupyter-gpuz")
        assert manifest["spec"]["nodeName"].startswith("gpu-a100")
        assert container(manifest)["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert "NVIDIA_VISIBLE_DEVICES" not in env_of(manifest)
        assert manifest["metadata"]["labels"]["kubestudio.io/gpus"] == "1"
    finally:
        z2jh.stop_server("gpuz")


def test_progress_keeps_kubernetes_words(bench, z2jh):
    z2jh.create_user("prog")
    # the start request returns once the server is ready: follow the progress beside it
    starting = threading.Thread(target=z2jh.spawn, args=("prog", "", {"profile": "bigger"}), kwargs={"wait": False})
    starting.start()
    try:
        events = []
        deadline = time.monotonic() + 60
        while not events and time.monotonic() < deadline:
            with z2jh.api("GET", "/users/prog/server/progress", stream=True, timeout=120) as stream:
                if stream.status_code != 200:
                    time.sleep(0.05)
                    continue
                for line in stream.iter_lines(decode_unicode=True):
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if events[-1].get("failed") or events[-1].get("ready"):
                            break
        starting.join()
        assert events and events[-1].get("ready"), events
        messages = [e["message"] for e in events]
        started = [m for m in messages if "Started container" in m]
        assert started and started[0].endswith("· Starting JupyterLab"), messages
        assert any(
            re.search(r"\[Normal\] Successfully assigned default/jupyter-prog to [\w-]+ · Placed on node", m)
            for m in messages
        ), messages
    finally:
        starting.join()
        z2jh.stop_server("prog")


def test_legacy_claim_name_is_kept_after_an_upgrade(bench, tmp_path):
    """A user whose server state comes from KubeSpawner 6 ('escape' names) keeps their claim."""
    user = "leg.acy"
    legacy = f"claim-{escape_slug(user)}"
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": legacy},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert bench.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json=body).status_code == 201
    hub = z2jh_hub(bench, tmp_path / "hub", ADMIN + DYNAMIC_STORAGE).start()
    try:
        hub.create_user(user)
        hub.stop()
        # what KubeSpawner 6 left in the hub's database: state without kubespawner_version
        with sqlite3.connect(os.path.join(hub.data_dir, "jupyterhub.sqlite")) as db:
            state = json.dumps({"pod_name": f"jupyter-{escape_slug(user)}"})
            db.execute(
                "UPDATE spawners SET state = ? WHERE user_id = (SELECT id FROM users WHERE name = ?)", (state, user)
            )
        hub.start()
        r = hub.spawn(user, "", {}, timeout=120)
        assert r.status_code in (201, 202), r.text
        items = bench.api(
            "GET", "/api/v1/namespaces/default/pods?labelSelector=kubestudio.io/component%3Dnotebook"
        ).json()["items"]
        manifest = next(p for p in items if p["metadata"]["annotations"].get("hub.jupyter.org/username") == user)
        assert mounts_of(manifest)["/home/jovyan"][0]["persistentVolumeClaim"]["claimName"] == legacy
        assert claim(bench, f"claim-{safe_slug(user)}") is None
    finally:
        hub.stop()


def test_form_is_kubespawners_with_the_project(z2jh, page, tmp_path):
    z2jh.create_user("formy")
    browser_login(page, z2jh, "formy")
    page.wait_for_url("**/hub/spawn**")
    # KubeSpawner's own cards, the shipped catalog hidden, KubeStudio's project chooser
    assert page.locator("#kubespawner-profiles-list input[name=profile]").count() == 4
    assert page.locator(".ks-profile").count() == 0
    assert page.locator("#ks-project").count() == 1
    assert page.locator("#kubespawner-profiles-list input[value=training-datascience]").is_checked()
    page.click("label[for=profile-item-pick]")
    page.select_option("#profile-option-pick--image", "unlisted-choice")
    page.fill("#profile-option-pick--image--unlisted-choice", "quay.io/jupyter/base-notebook:2025-01-06")
    page.screenshot(path=str(tmp_path / "z2jh-spawn-form.png"), full_page=True)
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url("**/user/formy/**", timeout=120_000)
    try:
        assert z2jh.server_model("formy")["user_options"] == {
            "profile": "pick",
            "image--unlisted-choice": "quay.io/jupyter/base-notebook:2025-01-06",
            "project": "public",
        }
    finally:
        z2jh.stop_server("formy")


def test_catalog_and_profile_list_together(bench, tmp_path):
    """An admin's own catalog beside a profile_list: both in one form; what a catalog profile
    says wins over the admin's settings, what it leaves out does not."""
    catalog = tmp_path / "profiles.yaml"
    catalog.write_text(yaml.safe_dump(CATALOG))
    profile_list = PROFILE_LIST.replace("c.KubeSpawner.profile_list", "c.WorkspaceSpawner.profile_list")
    hub = z2jh_hub(bench, tmp_path / "hub", ADMIN + profile_list, settings={"profiles_file": str(catalog)}).start()
    try:
        hub.create_user("both")
        session = hub.login("both")
        form = session.get(f"{hub.url}/hub/spawn").content.decode()
        assert 'id="kubespawner-profiles-list"' in form and 'data-slug="cpu"' in form
        r = hub.spawn("both", "cat", {"profile": "cpu"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        c = container(pod(bench, "jupyter-both--cat"))
        assert c["image"] == "kubestudio/notebook:1"
        assert c["resources"]["limits"] == {"cpu": "1", "memory": str(1024**3)}
        r = hub.spawn("both", "z2", {"profile": "bigger"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        c = container(pod(bench, "jupyter-both--z2"))
        assert c["image"] == Z2JH_IMAGE and c["resources"]["limits"] == {"cpu": "4", "memory": SIX_G}
        # an empty request starts the profile_list's default, as KubeSpawner would
        r = hub.spawn("both", "", {}, timeout=120)
        assert r.status_code in (201, 202), r.text
        assert container(pod(bench, "jupyter-both"))["image"] == DATASCIENCE
    finally:
        hub.stop()


def test_shipped_catalog_yields_to_admin_settings(bench, tmp_path):
    """No catalog of the admin's own and no profile_list: the shipped profiles show and run
    what the admin set on c.KubeSpawner."""
    hub = z2jh_hub(bench, tmp_path / "hub", ADMIN).start()
    try:
        hub.create_user("shipy")
        form = hub.login("shipy").get(f"{hub.url}/hub/spawn").content.decode()
        assert f"3 CPU · {format_bytes(6 * 1024**3)} RAM" in form, form
        r = hub.spawn("shipy", "", {"profile": "cpu-small"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        manifest = pod(bench, "jupyter-shipy")
        c = container(manifest)
        assert c["image"] == Z2JH_IMAGE and c["resources"]["limits"] == {"cpu": "3", "memory": SIX_G}
        assert env_of(manifest)["JUPYTERHUB_DEFAULT_URL"] == "/tree"
        # a VS Code server still opens VS Code: the IDE the user picked decides its URL
    finally:
        hub.stop()


def test_every_member_of_kubespawner_kubestudio_borrows_is_there_as_it_is_called():
    """kubestudio.kubespawner_api is the one door to KubeSpawner's private API: each member it
    borrows exists on the installed KubeSpawner with the parameters it is called with (the tests
    above drive each of them through real spawns)."""
    import inspect

    from kubespawner import KubeSpawner

    from kubestudio import kubespawner_api
    from kubestudio.spawner.workspace import WorkspaceSpawner

    for name, parameters in kubespawner_api.BORROWED.items():
        member = getattr(KubeSpawner, name, None)
        assert callable(member), f"KubeSpawner.{name} is gone"
        assert tuple(inspect.signature(member).parameters)[1:] == parameters, name
    # the one override of a private member: KubeSpawner still calls it to start its pod watch
    assert "self._start_watching_pods()" in inspect.getsource(KubeSpawner._start)
    assert WorkspaceSpawner._start_watching_pods is not KubeSpawner._start_watching_pods
    # slugs come from kubespawner's own file, the same function the package has
    import kubespawner.slugs

    assert kubespawner_api.slugs_module().safe_slug("Alice.Smith@example.org") == kubespawner.slugs.safe_slug(
        "Alice.Smith@example.org"
    )
