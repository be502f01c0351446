"""What runs a serving's model runtime: :class:`.base.ServingBackend` and its two
implementations, a local process (:mod:`.local`) and a Deployment or an InferenceService
(:mod:`.kubernetes`)."""
