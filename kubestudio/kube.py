"""Kubernetes plumbing shared by KubeStudio's services (one copy of each mechanism).

- :func:`load_client`: an API client from the in-cluster service account, else a kubeconfig;
- :func:`owned_labels` / :func:`selector`: our labels on everything we create, and the selector
  that finds it again;
- :class:`Reflector`: one shared watch per kind (list once, then watch, re-list on ``410 Gone``)
  keeping the latest object of each name, so following a pod to its end costs no request: waiters
  are woken by the watch's events, never by polling the API;
- :func:`stream_log`: a container's log, followed to its end, as lines;
- :class:`PullFailure`: when a container that cannot pull its image has waited long enough;
- :func:`clean_owned`: delete what we own that is older than an age, from a reflector's cache.

The services' backends (kaniko builds; jobs, TensorBoards and servings later) use these rather
than talking to the API themselves.
"""

import asyncio
import contextlib
import json
import time

from .names import MANAGED_BY

IMAGE_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# a pull that may still succeed (the registry was down, the tag not pushed yet): give it time
RETRIED_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff")


async def load_client(kubeconfig=""):
    """A ``kubernetes_asyncio`` ApiClient: in-cluster config when running in a pod, else
    ``kubeconfig`` (empty: $KUBECONFIG or ~/.kube/config). Close it when done."""
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config(config_file=kubeconfig or None)
    return client.ApiClient()


def owned_labels(component, **extra):
    """The labels every object a KubeStudio service creates carries."""
    return {**MANAGED_BY, "kubestudio.io/component": component, **extra}


def selector(labels):
    """A label selector matching all of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def api_message(error):
    """The message of an ApiException, for people."""
    try:
        return json.loads(error.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(getattr(error, "reason", error))


class Reflector:
    """The objects of one kind, namespace and label selector, kept current by one watch.

    ``list_method`` is a namespaced list call of ``kubernetes_asyncio`` (e.g.
    ``CoreV1Api(...).list_namespaced_pod``). Start it once; read :attr:`objects` or
    :meth:`get`, or :meth:`wait_for` a condition on one object.
    """

    def __init__(self, list_method, namespace, label_selector, log, resync_seconds=300, retry_seconds=1.0):
        self.list_method = list_method
        self.namespace = namespace
        self.label_selector = label_selector
        self.log = log
        self.resync_seconds = resync_seconds
        self.retry_seconds = retry_seconds
        self.objects = {}
        self.resource_version = None
        self._changed = asyncio.Condition()
        self._task = None

    async def start(self):
        await self._list()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self):
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def get(self, name):
        return self.objects.get(name)

    async def wait_for(self, name, predicate, timeout=None, recheck_seconds=1.0):
        """Wait until ``predicate(object or None)`` is true; return the object. The predicate is
        checked on every event of the watch and every ``recheck_seconds`` (for conditions that
        depend on time, such as a grace period), never by asking the API."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._changed:
            while not predicate(self.objects.get(name)):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise asyncio.TimeoutError()
                wait = recheck_seconds if left is None else min(recheck_seconds, left)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            return self.objects.get(name)

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    async def _list(self):
        result = await self.list_method(self.namespace, label_selector=self.label_selector)
        self.objects = {item.metadata.name: item for item in result.items}
        self.resource_version = result.metadata.resource_version
        await self._notify()

    async def _run(self):
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.rest import ApiException

        while True:
            try:
                stream = watch.Watch().stream(self.list_method, self.namespace, label_selector=self.label_selector,
                                              resource_version=self.resource_version,
                                              timeout_seconds=self.resync_seconds)
                async for event in stream:
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise ApiException(status=getattr(obj, "code", None) or obj.get("code", 500))
                    name = obj.metadata.name
                    self.resource_version = obj.metadata.resource_version
                    if kind == "DELETED":
                        self.objects.pop(name, None)
                    else:
                        self.objects[name] = obj
                    await self._notify()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a dropped watch, 410 Gone, the API away: list again, then watch
                gone = isinstance(e, ApiException) and e.status == 410
                if not gone:
                    self.log.warning("watch of %s in %s failed (%s: %s); listing again", self.label_selector,
                                     self.namespace, type(e).__name__, e)
                    await asyncio.sleep(self.retry_seconds)
                try:
                    await self._list()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.log.warning("could not list %s in %s: %s", self.label_selector, self.namespace, e)
                    await asyncio.sleep(self.retry_seconds)


async def stream_log(core, name, namespace, on_chunk):
    """Follow the log of pod ``name`` to its end, handing each chunk of bytes to ``on_chunk``."""
    response = await core.read_namespaced_pod_log(name, namespace, follow=True, _preload_content=False)
    try:
        async for chunk in response.content.iter_any():
            on_chunk(chunk)
    finally:
        response.release()


def container_state(pod, index=0):
    """The state of a pod's container (a V1ContainerState), or None before it has one."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    return statuses[index].state if len(statuses) > index else None


def pending_reason(pod):
    """Why a pod is not scheduled yet (the scheduler's message), as ": <message>", or ""."""
    for condition in (pod.status.conditions if pod is not None and pod.status else None) or []:
        if condition.type == "PodScheduled" and condition.status != "True" and condition.message:
            return f": {condition.message}"
    return ""


class PullFailure:
    """Whether a container that cannot pull its image has failed for good.

    A pull that may still work (ErrImagePull, ImagePullBackOff: the registry was away, the tag is
    being pushed) gets ``grace_seconds`` from the first time it was seen; a name that can never
    be pulled (InvalidImageName, ErrImageNeverPull) fails at once.
    """

    def __init__(self, grace_seconds):
        self.grace_seconds = grace_seconds
        self.since = None

    def failed(self, reasons):
        pulls = [r for r in reasons if r in IMAGE_PULL_ERRORS]
        if not pulls:
            self.since = None
            return False
        if any(r not in RETRIED_PULL_ERRORS for r in pulls):
            return True
        if self.since is None:
            self.since = time.monotonic()
        return time.monotonic() - self.since >= self.grace_seconds


async def clean_owned(reflector, delete, max_age_seconds, keep=()):
    """Delete (``await delete(name)``) the reflector's objects older than ``max_age_seconds`` that
    are not in ``keep``; their names. Reads the watch's cache: no list request."""
    now = time.time()
    removed = []
    for name, obj in list(reflector.objects.items()):
        created = obj.metadata.creation_timestamp
        if name not in keep and created is not None and now - created.timestamp() > max_age_seconds:
            await delete(name)
            removed.append(name)
    return removed
