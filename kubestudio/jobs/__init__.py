"""Jobs: training and serving from the notebook.

The SDK is what notebooks import (:class:`JobsClient`, :class:`JobSpec`); the service itself
(``python -m kubestudio.jobs``) lives in :mod:`.app`, imported only when it runs.
"""

from .client import JobFailed, JobsClient
from .experiments.client import ExperimentFailed, ExperimentsClient
from .spec import JobSpec, Resources, SpecError

__all__ = ["ExperimentFailed", "ExperimentsClient", "JobFailed", "JobsClient", "JobSpec", "Resources", "SpecError"]
