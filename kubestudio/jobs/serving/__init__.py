"""Serving models: the manager (supervision, restarts, rolling versions), the spec, the HTTP
handlers and proxy, the Kubernetes manifests, and the backends that run the model runtime.

The runtime (:mod:`.runtime`, KServe's model server with our loaders) runs in a process of its own
and is never imported by the service or the hub; :mod:`.formats` is the light part of it that
both share.
"""
