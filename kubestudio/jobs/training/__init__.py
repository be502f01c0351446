"""Training jobs: the manager (queue, retries, time limits, logs), the Kubernetes manifests
(TrainJob, JobSet, PyTorchJob and plain Jobs) and the backends that run the ranks."""
