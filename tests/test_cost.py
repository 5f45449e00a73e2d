"""The cost preview (explorer/cost.py): the graph's size from the config alone, the refusal of a trace that
would not fit before any work, and ``trace --dry-run``. How close the estimate is to measured peaks is a
benchmark (bench/memory_bench.py), not a test."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import explorer.models.limits as limits
from explorer.cost import BYTES, ESTIMATE_ERROR, ModelShape, estimate_cost, sparse_passes
from explorer.errors import OutOfMemory
from explorer.graph import layout_for
from explorer.results import Settings
from explorer.trace import trace_prompt
from tests.helpers import TINY_CONFIGS, make_tiny, tiny_loaded


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral"])
def test_shape_and_edges_from_the_config_alone(family):
    if family not in TINY_CONFIGS:
        pytest.skip(f"no tiny {family}")
    model = make_tiny(family)
    shape = ModelShape.from_config(model.config)
    n_params = sum(p.numel() for p in model.parameters())
    assert shape.n_params == pytest.approx(n_params, rel=0.05)  # norms and biases are left out
    lm, _ = tiny_loaded(family)
    for T in (1, 9, 40):
        assert estimate_cost(model.config, T, Settings()).n_edges == layout_for(lm.adapter, T).n_edges


def test_estimate_grows_with_the_square_of_the_length_and_counts_the_passes():
    config = make_tiny("llama").config
    short, long = (estimate_cost(config, T, Settings(controls=True), "cuda") for T in (256, 512))
    grown = lambda e: e.peak_bytes - e.weights_bytes - BYTES["fixed"]
    assert 3.0 < grown(long) / grown(short) < 4.5
    plain = estimate_cost(config, 256, Settings(controls=False, sizes=(0.1, 1.0)), "cuda")
    # 2 sizes x 1 variant: one pass, cut in two beside the host search; 27 x 3 in batches of 32
    assert plain.n_passes == 2 and short.n_passes == 3
    assert plain.peak_bytes < short.peak_bytes


def test_a_trace_that_would_not_fit_is_refused_with_the_estimate_before_any_work(monkeypatch):
    lm, _ = tiny_loaded("llama")
    monkeypatch.setattr(limits, "available_bytes", lambda device: 1024)
    ran = []
    monkeypatch.setattr(lm.instrumentation, "recorded_forward", lambda *a, **k: ran.append(1))
    with pytest.raises(OutOfMemory, match=r"would not fit: \d+ tokens: E = .* edges.*1.0 KiB|would not fit") as exc:
        trace_prompt(lm, "a tiny prompt", Settings(controls=True))
    assert "estimated peak" in str(exc.value) and "no controls" in str(exc.value) and "shorter prompt" in str(exc.value)
    assert not ran  # refused before the forward pass


def test_a_trace_that_fits_is_not_refused(monkeypatch):
    lm, _ = tiny_loaded("llama")
    monkeypatch.setattr(limits, "available_bytes", lambda device: 1 << 40)
    assert trace_prompt(lm, "a tiny prompt", Settings(sizes=(0.5, 1.0))).strata[-1].trace.tv < 1e-5


def test_a_trace_that_fits_only_in_smaller_batches_runs_in_them(monkeypatch):
    """Where only the masked passes' batch is too large, the trace runs in the largest batch whose
    estimate fits (not one that fits only were the estimate too high) and says so in its settings (the
    numbers equal the requested batch's within float rounding); where none fits, the estimate is the
    requested one's (the caller refuses it)."""
    from explorer.cost import fits, fitting_settings
    from explorer.inputs import tokenize

    lm, _ = tiny_loaded("llama")
    prompt, settings = "a tiny prompt for the batches", Settings(controls=True)
    n = tokenize(lm, prompt, settings.max_tokens).shape[1]
    config = lm.model.config
    at = lambda b: estimate_cost(config, n, replace(settings, batch_size=b), lm.device, lm.dtype)
    assert at(32).peak_stage == "evaluate" and at(8).peak_bytes < at(9).peak_bytes < at(32).peak_bytes
    free = at(8).peak_bytes - at(8).weights_bytes  # batches of 8 fit outright; of 9, only were it 25% too high
    fitted, est = fitting_settings(config, n, settings, free, lm.device, lm.dtype)
    assert fitted.batch_size == 8 and fits(est, free, error=0) and not fits(at(9), free, error=0) and fits(at(9), free)
    monkeypatch.setattr(limits, "available_bytes", lambda device: free)
    small = trace_prompt(lm, prompt, settings)
    monkeypatch.setattr(limits, "available_bytes", lambda device: 1 << 40)
    whole = trace_prompt(lm, prompt, settings)
    assert small.settings.batch_size == 8 and whole.settings.batch_size == 32
    for a, b in zip(small.strata, whole.strata):
        for variant in ("trace", "inverse", "random"):
            assert a.outputs[variant].tv == pytest.approx(b.outputs[variant].tv, abs=1e-6)
    tight = int((at(1).peak_bytes - at(1).weights_bytes) * (1 - ESTIMATE_ERROR)) - 1  # not even one at a time
    fitted, est = fitting_settings(config, n, settings, tight, lm.device, lm.dtype)
    assert fitted == settings and est == at(32) and not fits(est, tight)


def test_available_bytes_on_the_cpu_is_positive():
    assert limits.available_bytes(torch.device("cpu")) > 0


def test_dry_run_prints_the_estimate_and_loads_no_weights(smollm, capsys, monkeypatch):
    import explorer.models.loading as loading
    from explorer.__main__ import main

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("--dry-run loaded the model"))
    code = main(["trace", "--model", "smollm2-135m", "--prompt", "The capital of France is", "--dry-run", "--controls"])
    out = capsys.readouterr().out
    assert code == 0
    assert "E = " in out and "estimated peak" in out and "GiB available" in out and "fits" in out
    n = len(smollm.tokenizer("The capital of France is")["input_ids"])
    assert out.startswith(f"{n} tokens: E = {layout_for(smollm.adapter, n).n_edges:,} edges")


def test_out_of_memory_frees_the_failed_steps_tensors():
    """The message replaces the error, and the tensors of the step that failed are released at once,
    although a reference cycle through its frames (here: the error kept in a frame's own local) lives on."""
    import gc
    import weakref

    from explorer.inputs import memory_message

    held = []

    def step():
        buffers = torch.zeros(1000)
        held.append(weakref.ref(buffers))
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as exc:
            kept = exc  # error -> traceback -> this frame -> error: a cycle
            raise kept from None

    gc.disable()
    try:
        with pytest.raises(OutOfMemory) as caught:
            with memory_message():
                step()
        assert held[0]() is None
        assert "out of memory" in str(caught.value)
    finally:
        gc.enable()


def test_passes_skip_removed_mlp_rows_where_their_flops_bind_not_their_launches():
    import json
    from pathlib import Path

    from transformers import AutoConfig

    def config(name):
        cfg = json.loads((Path(__file__).parent.parent / "bench" / "configs" / f"{name}.json").read_text())
        return AutoConfig.for_model(cfg.pop("model_type"), **cfg)

    small, large = config("smollm2-135m"), config("llama-3.1-8b")
    assert not sparse_passes(small, 48, 32, "cuda")  # launch-bound on a GPU: passes as planned
    assert sparse_passes(small, 1024, 32, "cuda") and sparse_passes(small, 48, 32, "cpu")
    assert sparse_passes(large, 48, 32, "cuda:0")
