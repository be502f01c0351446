import pytest

from kubestudio.testing.imageshub import start_images_hub
from kubestudio.testing.registry import LocalRegistry, push_busybox_base, tools_missing

REGISTRY_USER = "builder"
REGISTRY_PASSWORD = "s3cret-registry-pass"


@pytest.fixture(scope="session")
def build_tools():
    missing = tools_missing()
    if missing:
        pytest.fail(f"the build tests need Debian packages {', '.join(missing)}: run scripts/test.sh (it installs them)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, build_tools):
    root = tmp_path_factory.mktemp("registry")
    reg = LocalRegistry(root / "registry", user=REGISTRY_USER, password=REGISTRY_PASSWORD).start()
    reg.auth = reg.auth_file(str(root / "auth.json"))
    reg.base = push_busybox_base(reg.host, str(root / "base-storage"), auth_file=reg.auth)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory, registry):
    images = start_images_hub(tmp_path_factory.mktemp("images-hub"), registry)
    yield images
    images.hub.stop()
