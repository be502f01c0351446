"""The service kit's capped, chunked log: adding many lines at once is the same as one by one."""

import random

from kubestudio.services.livelog import CHUNK_CHARS, LiveLog


def state(log):
    return log.sealed, log.open, log.chars, log.cut, log.dropped


def test_extend_equals_append_one_by_one():
    rng = random.Random(7)
    lines = ["x" * rng.choice([0, 1, 50, 999, 5000, CHUNK_CHARS + 3]) + str(i) for i in range(2000)]
    for limit in (10 * 1024 * 1024, 300_000):  # under the cap, and cut part way
        one, many = LiveLog(limit), LiveLog(limit)
        for line in lines:
            one.append(line)
        position = 0
        while position < len(lines):
            step = rng.randint(1, 300)
            many.extend(lines[position : position + step])
            position += step
        one.close()
        many.close()
        assert state(one) == state(many)
    assert one.cut and "the log reached its limit" in "\n".join(t for t, _ in one.sealed) + "\n".join(one.open)
