"""What runs a job's ranks: :class:`.base.JobBackend` and its two implementations, local
processes (:mod:`.local`) and Kubernetes objects (:mod:`.kubernetes`)."""
