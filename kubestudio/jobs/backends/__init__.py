"""The class paths of the jobs backends as they were before training and serving got packages of
their own (``kubestudio.jobs.backends.local.LocalJobBackend``, ``...kubernetes.KubernetesJobBackend``),
kept so a ``c.JobService.backend_class`` written for them still loads. New configuration names
:mod:`kubestudio.jobs.training.backends`."""
