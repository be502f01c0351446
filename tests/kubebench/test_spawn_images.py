"""The spawn form offers the images a user built, and a pod starts from one (real hub, image
service with buildah and a real registry, WorkspaceSpawner on the bench)."""

import os
import re

import pytest
import yaml

from kubestudio.testing.imageshub import start_images_hub

from .test_workspace_spawner import CATALOG, CONFIG, PROJECTS, ensure_claims, pod

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hub_with_images(bench, registry, tmp_path_factory):
    ensure_claims(bench)
    root = tmp_path_factory.mktemp("spawn-images")
    catalog = os.path.join(str(root), "profiles.yaml")
    with open(catalog, "w") as f:
        yaml.safe_dump(CATALOG, f)
    config = "\n".join(line for line in CONFIG.splitlines() if "user_images_prefix" not in line)
    # the form is what is tested here: build with buildah (test_kaniko covers build pods)
    config += '\nc.ImageBuilder.backend_class = "kubestudio.image_builder.backends.buildah.BuildahBackend"\n'
    # its own image storage, removed with the test's folder (never the machine's shared one)
    config += (
        f'c.BuildahBackend.storage_root = "{root}/buildah/storage"\nc.BuildahBackend.run_root = "{root}/buildah/run"\n'
    )

    images = start_images_hub(
        root / "hub",
        registry,
        extra=config,
        settings={"spawner": "kubernetes", "profiles_file": catalog, "projects": PROJECTS},
        env={"KUBECONFIG": bench.kubeconfig},
    )
    yield images
    images.hub.stop()


def test_form_lists_built_images_and_spawns_one(hub_with_images, bench):
    images = hub_with_images
    client = images.client("nora")
    build = client.build(dockerfile_text=f"FROM {images.registry.base}\nRUN echo nora-tools\n", name="tools")
    final = images.wait("nora", build["id"])
    assert final["status"] == "succeeded"
    other = images.client("omar").build(dockerfile_text=f"FROM {images.registry.base}\nRUN echo omar\n", name="mine")
    assert images.wait("omar", other["id"])["status"] == "succeeded"

    form = images.hub.login("nora").get(f"{images.hub.url}/hub/spawn").text
    own = re.search(r'<select name="image-own">(.*?)</select>', form, re.S).group(1)
    assert '<optgroup label="Your images">' in own and f'value="{final["image"]}"' in own
    assert other["image"] not in form  # only her own
    assert "image-cpu" not in form or final["image"] not in re.search(
        r'name="image-cpu">(.*?)</select>', form, re.S
    ).group(1)

    r = images.hub.spawn("nora", "", {"profile": "own", "image": final["image"]}, timeout=120)
    try:
        assert r.status_code in (201, 202), r.text
        assert pod(bench, "jupyter-nora")["spec"]["containers"][0]["image"] == final["image"]
    finally:
        images.hub.stop_server("nora")
