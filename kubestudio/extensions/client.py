"""Python client of the KubeStudio hub services, for notebooks and the ``kubestudio`` CLI.

Inside a server it needs nothing: it reads ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``
(the server's own token, whose role lets it call the image service for its owner) and asks the
hub where the service is. Elsewhere, set those two variables (a token from the hub's token page)
or ``KUBESTUDIO_IMAGES_URL`` (the service's address, e.g. https://hub.example.org/services/images/).

    from kubestudio.extensions.client import ImagesClient
    images = ImagesClient()
    build = images.build(context="projects/my-image", name="my-image")
    for line in images.follow(build["id"]):
        print(line)
"""

from ..services.client import ServiceClient, ServiceError  # noqa: F401 (ServiceError: the SDK's error)


class ImagesClient(ServiceClient):
    service = "images"
    url_variable = "KUBESTUDIO_IMAGES_URL"
    label = "the image service"

    def build(self, **request):
        """Start a build (fields as in POST api/builds: context, dockerfile_text, environment,
        from_server, name, tag...); returns the build record (status queued, running or exists)."""
        return self._call("POST", "api/builds", json=request).json()

    def builds(self, user=None):
        params = {"user": user} if user else {}
        return self._call("GET", "api/builds", params=params).json()["builds"]

    def get(self, build_id):
        return self._call("GET", f"api/builds/{build_id}").json()

    def cancel(self, build_id):
        return self._call("DELETE", f"api/builds/{build_id}").json()

    def images(self, user=None):
        params = {"user": user} if user else {}
        return self._call("GET", "api/images", params=params).json()["images"]

    def bases(self):
        """Base images the service makes itself, with their state (preparing, ready, failed)."""
        return self._call("GET", "api/bases").json()["bases"]

    def log(self, build_id):
        return self._call("GET", f"api/builds/{build_id}/logs").text

    def follow(self, build_id):
        """Yield log lines as they come (the whole log first), then the final record as a dict."""
        for event in self._events(f"api/builds/{build_id}/logs"):
            if event.get("type") == "log":
                yield event["line"]
            elif event.get("type") == "result":
                event.pop("type")
                yield event
                return
