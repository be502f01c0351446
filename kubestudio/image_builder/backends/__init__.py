"""Build backends behind one interface: buildah (embedded default) and kaniko (Kubernetes)."""
