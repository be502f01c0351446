"""A fair queue for work a service runs for users (builds, jobs): global and per-user limits,
FIFO with per-user fairness.

Waiting items are served round-robin by user, each user's items in the order they came: with
alice's five builds queued before bob's one, bob's starts second, not sixth. Users with fewer
items running come first, then the one served longest ago. An item starts when fewer than
``max_running`` items run and its owner has fewer than ``max_per_user`` running. This module is
pure bookkeeping; the service starts what :meth:`FairQueue.next_ready` hands out.
"""

from collections import OrderedDict


class FairQueue:
    def __init__(self, max_running=2, max_per_user=1):
        self.max_running = max_running
        self.max_per_user = max_per_user
        self.waiting = OrderedDict()  # item id -> owner, in arrival order
        self.running = {}  # item id -> owner
        self.last_served = {}  # owner -> when their last item started (a counter)
        self._served = 0

    def add(self, item_id, owner):
        self.waiting[item_id] = owner

    def remove(self, item_id):
        """Forget an item (cancelled or finished); True if it was queued or running."""
        return self.waiting.pop(item_id, None) is not None or self.running.pop(item_id, None) is not None

    def order(self):
        """Waiting item ids in the order they will be served (round-robin by user)."""
        per_user = OrderedDict()
        for item_id, owner in self.waiting.items():
            per_user.setdefault(owner, []).append(item_id)
        # fewest running first, then the user served longest ago (never served: first)
        users = sorted(per_user, key=lambda u: (self._running_for(u), self.last_served.get(u, -1)))
        ordered, round_ = [], 0
        while len(ordered) < len(self.waiting):
            for user in users:
                if round_ < len(per_user[user]):
                    ordered.append(per_user[user][round_])
            round_ += 1
        return ordered

    def position(self, item_id):
        """1 for the next item to start; None if the item is not waiting."""
        try:
            return self.order().index(item_id) + 1
        except ValueError:
            return None

    def positions(self):
        return {item_id: i + 1 for i, item_id in enumerate(self.order())}

    def next_ready(self, can_start=None):
        """Move items that may start now from waiting to running; return their ids.

        ``can_start(item_id)`` may hold an item back (it waits for GPUs) without losing its place;
        it is asked only of an item the limits would start, and may take what the item needs.
        """
        started, held = [], set()
        while len(self.running) < self.max_running:
            candidate = next(
                (i for i in self.order() if i not in held and self._running_for(self.waiting[i]) < self.max_per_user),
                None,
            )
            if candidate is None:
                break
            if can_start is not None and not can_start(candidate):
                held.add(candidate)
                continue
            owner = self.running[candidate] = self.waiting.pop(candidate)
            self._served += 1
            self.last_served[owner] = self._served
            started.append(candidate)
        return started

    def _running_for(self, owner):
        return sum(1 for o in self.running.values() if o == owner)
