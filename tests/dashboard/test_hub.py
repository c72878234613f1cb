"""Event-stream fan-out: bounded per-client queues, slow clients dropped, a cap on clients."""

from __future__ import annotations

import asyncio

from symphonyd.dashboard.link import Hub


def test_a_client_that_stops_reading_is_dropped_and_others_keep_up() -> None:
    async def body() -> None:
        hub = Hub(queue_size=4, max_clients=8)
        slow, fast = hub.join(), hub.join()
        assert slow is not None and fast is not None
        got: list[str] = []
        for i in range(10):
            hub.publish(f"m{i}")
            while not fast.empty():
                item = fast.get_nowait()
                assert item is not None
                got.append(item)
        assert got == [f"m{i}" for i in range(10)]
        assert hub.dropped == 1 and len(hub) == 1
        drained = [slow.get_nowait() for _ in range(slow.qsize())]
        assert drained[-1] is None  # the stream handler sees the end and closes the response
        assert len(drained) <= 4

    asyncio.run(body())


def test_streams_beyond_the_cap_are_refused_and_close_ends_all() -> None:
    async def body() -> None:
        hub = Hub(queue_size=2, max_clients=2)
        first, second = hub.join(), hub.join()
        assert hub.join() is None
        hub.close()
        for queue in (first, second):
            assert queue is not None and queue.get_nowait() is None
        assert len(hub) == 0

    asyncio.run(body())
