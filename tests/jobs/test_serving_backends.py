"""Which serving backend runs beside which jobs backend (JobService.serving_backend_class): the
default is the one the jobs backend names, another jobs backend's is refused with the setting at
fault, a jobs backend that names none runs no servings, and a backend of one's own is used."""

import pytest
from traitlets.config import Config

from kubestudio.jobs.app import JobService
from kubestudio.jobs.serving.backends.base import ServingBackend
from kubestudio.jobs.serving.backends.kubernetes import KubernetesServingBackend
from kubestudio.jobs.serving.backends.local import LocalServingBackend
from kubestudio.jobs.training.backends.base import JobBackend

KUBERNETES_JOBS = "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend"


class QueueJobBackend(JobBackend):
    """A jobs backend of a site's own, which serves no models unless told."""

    name = "queue"


class QueueServingBackend(ServingBackend):
    name = "queue-serving"
    job_backend_class = QueueJobBackend


@pytest.fixture
def config(tmp_path, monkeypatch):
    # what the hub gives a managed service in its environment (make_app builds the OAuth settings)
    for name, value in {
        "JUPYTERHUB_API_TOKEN": "unused",
        "JUPYTERHUB_CLIENT_ID": "service-jobs",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/jobs/",
    }.items():
        monkeypatch.setenv(name, value)
    c = Config()
    c.JobService.db_url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    c.JobService.cookie_secret_file = str(tmp_path / "jobs_cookie_secret")
    c.LocalJobBackend.data_dir = str(tmp_path / "data")
    return c


def serving_backend(config):
    service = JobService(config=config)
    service.make_app()
    return service.servings.backend if service.servings is not None else None


def test_each_jobs_backend_names_its_serving_backend(config):
    assert type(serving_backend(config)) is LocalServingBackend
    config.JobService.backend_class = KUBERNETES_JOBS
    assert JobService(config=config).serving_backend_class is KubernetesServingBackend


def test_a_serving_backend_beside_another_jobs_backend_is_refused(config):
    config.JobService.backend_class = KUBERNETES_JOBS
    config.JobService.serving_backend_class = "kubestudio.jobs.serving.backends.local.LocalServingBackend"
    with pytest.raises(TypeError) as refused:
        serving_backend(config)
    assert str(refused.value) == (
        "JobService.serving_backend_class: LocalServingBackend works beside a LocalJobBackend, "
        "and the jobs backend is a KubernetesJobBackend"
    )


def test_a_jobs_backend_of_ones_own_serves_with_its_own_backend_or_none(config):
    config.JobService.backend_class = QueueJobBackend
    assert serving_backend(config) is None  # it names none: no servings (api/servings: 409)
    config.JobService.serving_backend_class = QueueServingBackend
    backend = serving_backend(config)
    assert type(backend) is QueueServingBackend and isinstance(backend.jobs, QueueJobBackend)
