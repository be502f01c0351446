"""The pod reflector's index of our pods by owner, driven the way KubeSpawner's reflector changes
its pods: a full re-list assigns a new dict, watch events set and pop keys."""

from kubestudio.spawner.podindex import OwnedPodReflector, PodsByOwner, owner_of


def pod(name, user=None, project="public", namespace="ns"):
    metadata = {"name": name, "namespace": namespace, "labels": {}, "annotations": {}}
    if user:
        metadata["labels"]["kubestudio.io/user"] = user
        metadata["annotations"]["kubestudio.io/project"] = project
    return {"metadata": metadata, "spec": {}, "status": {}}


def key(p):
    return f"{p['metadata']['namespace']}/{p['metadata']['name']}"


def test_owner_of():
    assert owner_of(pod("a", "alice", "vision")) == ("alice", "vision")
    assert owner_of(pod("z2jh-pod")) is None


def test_relist_then_watch_events_keep_the_index():
    reflector = OwnedPodReflector.__new__(OwnedPodReflector)  # no API client: the trait and its observer only
    listed = [pod("a1", "alice"), pod("a2", "alice", "vision"), pod("b1", "bob"), pod("other")]
    reflector.resources = {key(p): p for p in listed}  # what _list_and_update assigns
    pods = reflector.resources
    assert isinstance(pods, PodsByOwner)
    assert set(pods.owned[("alice", "public")]) == {"ns/a1"}
    assert set(pods.owned[("alice", "vision")]) == {"ns/a2"}
    assert len(pods) == 4

    # ADDED / MODIFIED: a pod moving to another project (annotation changed) moves in the index
    moved = pod("a1", "alice", "vision")
    pods[key(moved)] = moved
    assert ("alice", "public") not in pods.owned
    assert set(pods.owned[("alice", "vision")]) == {"ns/a1", "ns/a2"}

    # DELETED
    pods.pop("ns/a2", None)
    pods.pop("ns/missing", None)
    assert set(pods.owned[("alice", "vision")]) == {"ns/a1"}
    del pods["ns/b1"]
    assert ("bob", "public") not in pods.owned
    assert set(pods) == {"ns/a1", "ns/other"}

    # a new re-list replaces everything, stale entries included
    reflector.resources = {key(p): p for p in [pod("c1", "carol")]}
    assert set(reflector.resources.owned) == {("carol", "public")}
