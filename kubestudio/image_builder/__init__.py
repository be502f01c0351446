"""Image build service: API, queue, registry client, buildah and kaniko backends."""
