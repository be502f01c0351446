"""The build queue: limits and per-user fairness."""

from kubestudio.services.queue import FairQueue


def test_fair_round_robin_and_limits():
    q = FairQueue(max_running=2, max_per_user=1)
    for i in range(4):
        q.add(f"a{i}", "alice")
    q.add("b0", "bob")
    q.add("c0", "carol")
    # alice queued first, but bob and carol are served before alice's second build
    assert q.order() == ["a0", "b0", "c0", "a1", "a2", "a3"]
    assert q.position("c0") == 3
    assert q.next_ready() == ["a0", "b0"]
    # a user with a build running goes after one with none
    assert q.order() == ["c0", "a1", "a2", "a3"]
    assert q.next_ready() == []  # two running: the global limit
    q.remove("a0")
    assert q.next_ready() == ["c0"]  # alice's next waits: fair share first, and bob holds the slot
    q.remove("b0")
    assert q.next_ready() == ["a1"]
    assert q.next_ready() == []  # alice already has one running
    assert q.position("a2") == 1 and q.position("a1") is None


def test_per_user_limit_lets_others_pass():
    q = FairQueue(max_running=3, max_per_user=1)
    q.add("a0", "alice")
    q.add("a1", "alice")
    q.add("b0", "bob")
    assert q.next_ready() == ["a0", "b0"]
    assert q.positions() == {"a1": 1}
    assert q.remove("a1") and not q.remove("a1")


def test_an_item_held_back_keeps_its_place():
    q = FairQueue(max_running=2, max_per_user=2)
    for item, owner in (("a1", "alice"), ("b1", "bob"), ("a2", "alice")):
        q.add(item, owner)
    assert q.next_ready(can_start=lambda item: item != "a1") == ["b1", "a2"]
    assert q.position("a1") == 1
    q.remove("b1")
    assert q.next_ready() == ["a1"]
