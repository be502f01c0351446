import os

import pytest

import kubestudio.testing
from kubestudio.testing.kubebench import Bench, binaries_present

MISSING_IMAGE = "registry.invalid/kubestudio/missing:1"
TESTING_BIN = os.path.join(os.path.dirname(os.path.abspath(kubestudio.testing.__file__)), "bin")


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """The Kubernetes test bench in process mode, with the default nodes and the CRDs."""
    if os.environ.get("KUBESTUDIO_TEST_KUBECONFIG"):
        pytest.skip("these tests check the bench itself; a real cluster has a real kubelet")
    if not binaries_present():
        pytest.fail("the bench's control plane is not built: python -m kubestudio.testing.kubebench build")
    from kubestudio.hub.config import KubeStudio

    # the bench's "image" has what the repository installed: code-server for VS Code profiles
    # and the stand-in for kaniko's executor (buildah with kaniko's flags) for build pods
    b = Bench(
        tmp_path_factory.mktemp("kubebench"),
        mode="process",
        missing_images=[MISSING_IMAGE],
        path_prepend=KubeStudio().tool_dirs + [TESTING_BIN],
    )
    b.start()
    yield b
    b.stop()


@pytest.fixture
def crds(bench):
    """The upstream CRDs installed on the bench; the test is skipped, with the reason, without them."""
    if bench.crds_missing:
        pytest.skip(bench.crds_missing)
    return bench.crd_report


@pytest.fixture(scope="module")
def ns(bench, request):
    """The namespace named by the module's ``NS``, made on the session's bench for the module's
    custom resources (skipped where the bench has no CRDs)."""
    if bench.crds_missing:
        pytest.skip(bench.crds_missing)
    name = request.module.NS
    bench.api("POST", "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name
