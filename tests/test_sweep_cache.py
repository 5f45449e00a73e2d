"""The app's sweep store, without Streamlit: requests are typed, frozen keys; one computation per request
across sessions; bounded in entries and bytes."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from explorer.results import Settings
from explorer.sweep_cache import Sweep, SweepRequest, SweepStore


class _FakeTrace:
    def __init__(self, n):
        self.order = np.zeros(n, dtype=np.int64)
        self.order_weights = np.zeros(n, dtype=np.float32)


def _sweep(n: int) -> Sweep:
    return Sweep(_FakeTrace(n), 0.0, 0.0)


def request(prompt: str = "k", **settings) -> SweepRequest:
    return SweepRequest(
        model="smollm2-135m", device="auto", dtype="auto", revision=None, prompt=prompt, settings=Settings(**settings)
    )


def test_a_request_is_a_frozen_key_of_its_fields():
    a, b = request("The capital of France is"), request("The capital of France is")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert request(controls=True) != request(controls=False)
    assert dataclasses.replace(a, device="cuda:1") != a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.prompt = "other"  # type: ignore[misc]
    assert a.gold is None and a.settings.max_tokens == Settings().max_tokens


def test_store_computes_each_key_once_for_concurrent_sessions():
    store = SweepStore()
    calls, waits = [], []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return _sweep(10)

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(store.get_or_compute(request(), compute, lambda: waits.append(1))))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 6 and all(g is got[0] for g in got) and len(waits) == 5


def test_store_retries_after_a_failed_computation():
    store = SweepStore()

    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_compute(request(), fail)
    assert store.get_or_compute(request(), lambda: _sweep(1)) is store.get(request())


def test_store_is_bounded_in_entries_and_bytes():
    store = SweepStore(max_entries=3, max_bytes=3 * (12 * 1000 + 64 * 1024))
    for i in range(5):
        store.put(request(str(i)), _sweep(1000))
    assert list(store.items) == [request("2"), request("3"), request("4")]
    store.put(request("big"), _sweep(100_000))  # over the byte bound alone: kept, the others go
    assert list(store.items) == [request("big")]
