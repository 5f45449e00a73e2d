"""Several sessions sharing one model: traces are serialised by the model's lock and give the same
numbers as one after another."""

from __future__ import annotations

import threading
import time

import pytest

import explorer.passes as passes_module
from explorer.errors import BadPrompt
from explorer.results import Settings
from explorer.trace import trace_prompt
from tests.helpers import tiny_loaded

SETTINGS = Settings(controls=True, sizes=(0.01, 0.1, 1.0))
PROMPTS = ["first prompt here", "a second one", "third", "and a fourth prompt"]


def test_concurrent_traces_equal_sequential_and_never_overlap(monkeypatch):
    lm = tiny_loaded("llama")[0]
    sequential = [trace_prompt(lm, p, SETTINGS) for p in PROMPTS]

    inside, peak, lock = 0, 0, threading.Lock()
    real = passes_module.masked_logits

    def watched(*args, **kwargs):
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.05)  # widen the window in which an overlap would show
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(passes_module, "masked_logits", watched)  # each batch, under the lock
    results: dict[int, object] = {}
    messages: list[str] = []
    barrier = threading.Barrier(len(PROMPTS) * 2)

    def work(i: int):
        barrier.wait()
        results[i] = trace_prompt(lm, PROMPTS[i % len(PROMPTS)], SETTINGS, progress=lambda f, m: messages.append(m))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS) * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == len(PROMPTS) * 2
    assert peak == 1
    assert any(m.startswith("waiting") for m in messages)
    for i, tr in results.items():
        ref = sequential[i % len(PROMPTS)]
        for a, b in zip(tr.strata, ref.strata):
            for v in a.outputs:
                assert a.outputs[v].tv == pytest.approx(b.outputs[v].tv, abs=1e-6)
    assert not lm.lock.locked()


def test_lock_is_released_after_a_failure():
    lm = tiny_loaded("llama")[0]
    with pytest.raises(BadPrompt):
        trace_prompt(lm, "x" * 400, Settings(max_tokens=32))
    assert not lm.lock.locked()
