import pytest

from kubestudio.testing.imageshub import start_images_hub


@pytest.fixture(scope="module")
def images(tmp_path_factory, registry):
    images = start_images_hub(tmp_path_factory.mktemp("images-hub"), registry)
    yield images
    images.hub.stop()
