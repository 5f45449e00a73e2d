"""Streamlit-side state shared by the pages: the app's configuration, the process-wide model cache, the
store of computed sweeps (:class:`explorer.sweep_cache.SweepStore`, one per process, shared by every
session) with the progress bar drawn while one is computed and the "Time" it shows, the model lists'
entries, the page sections, and the widget values a page keeps across visits to other pages (the debug
panel is :mod:`ui.debug`).

The work itself is done by :mod:`explorer`; only ``app.py`` and the ``ui`` package import Streamlit.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from dataclasses import replace
from typing import cast

import streamlit as st

from explorer.config import AppConfig, current_config
from explorer.errors import BadPrompt, BadSetting, ExplorerError
from explorer.options import DTYPES, Mode
from explorer.results import Settings
from explorer.sweep_cache import Strip, StripRequest, Sweep, SweepRequest, SweepStore
from explorer.token_text import token_text
from ui.safe import plain

LOG = logging.getLogger("s_trace_explorer.ui")
CHARS_PER_TOKEN = 16  # a prompt longer than max_prompt_tokens * this is refused before it is tokenised

# ---------------------------------------------------------------------------------------- configuration


@st.cache_resource(show_spinner=False)
def _config_or_error() -> tuple[AppConfig | None, str | None]:
    try:
        cfg = current_config(sys.argv[1:])
    except ExplorerError as exc:
        return None, str(exc)
    if cfg.cache_dir:
        os.environ["STRACE_CACHE"] = os.path.expanduser(cfg.cache_dir)
    return cfg, None


def app_config() -> AppConfig:
    """The process's configuration (``--config PATH`` after ``--``, or ``$STRACE_CONFIG``); a bad file
    stops the page with its message."""
    cfg, error = _config_or_error()
    if error:
        st.error(f"Configuration error: {plain(error)}")
        st.stop()
    assert cfg is not None
    return cfg


def demo_banner(cfg: AppConfig) -> None:
    """In demo mode, the banner that says what the demo allows."""
    if cfg.demo:
        st.info(
            f"**Demo**: the models {', '.join(cfg.models)}, prompts of at most {cfg.max_prompt_tokens} tokens, "
            f"corpus runs of at most {cfg.corpus_max_prompts} prompts. Run it on your own machine for more.",
            icon=":material/science:",
        )


def host_devices() -> list[str]:
    """The devices this host has: ``auto``, ``cpu``, and ``cuda`` (each GPU as ``cuda:N`` where there are
    several) and ``mps`` where torch finds them."""
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        out += ["cuda"] + ([f"cuda:{i}" for i in range(count)] if count > 1 else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def device_options(cfg: AppConfig) -> list[str]:
    """The devices offered. In demo mode the configured one (``cuda:1`` as itself) and ``auto`` (which
    resolves to a device the host has); else the devices this host has (:func:`host_devices`) and the
    configured one."""
    if cfg.demo:
        return [cfg.device] + (["auto"] if cfg.device != "auto" else [])
    here = host_devices()
    return here + ([cfg.device] if cfg.device not in here else [])


def dtype_options(cfg: AppConfig | None = None) -> list[str]:
    """The dtypes offered: in demo mode only the configured one; else ``auto`` and
    :data:`explorer.options.DTYPES` (the configuration's is one of them)."""
    if cfg is not None and cfg.demo:
        return [cfg.dtype]
    return ["auto", *DTYPES]


_ERROR_DETAILS = st.get_option("client.showErrorDetails")  # as Streamlit was started


def show_error_details(cfg: AppConfig) -> None:
    """Streamlit's own report of an uncaught exception: in demo mode its type only, no message or
    traceback (Streamlit logs those on the server); else what Streamlit was started with."""
    st.set_option("client.showErrorDetails", "type" if cfg.demo else _ERROR_DETAILS)


def unexpected_error(what: str, exc: BaseException) -> None:
    """An unexpected failure ``what`` ("while tracing"): the traceback goes to the server's log; the page
    shows one line, and outside demo mode the message and the traceback under "Details"."""
    LOG.error("unexpected error %s", what, exc_info=exc)
    if app_config().demo:
        st.error(f"Unexpected error {what} ({type(exc).__name__}); the details are in the server's log.")
        return
    st.error(f"Unexpected error {what}: {plain(str(exc))}")
    with st.expander("Details"):
        st.code("".join(traceback.format_exception(exc)))


def max_prompt_chars(cfg: AppConfig) -> int:
    """The most characters of a prompt or text: :data:`CHARS_PER_TOKEN` per token of the cap."""
    return cfg.max_prompt_tokens * CHARS_PER_TOKEN


def check_prompt_chars(text: str, what: str = "prompt") -> None:
    """Refuse (:class:`BadPrompt`) a text longer than :func:`max_prompt_chars`, before it is tokenised (a
    long one would hold the model's lock while it is)."""
    cfg = app_config()
    limit = max_prompt_chars(cfg)
    if len(text) > limit:
        raise BadPrompt(
            f"the {what} has {len(text):,} characters; the limit here is {limit:,} characters "
            f"({cfg.max_prompt_tokens} tokens): shorten it"
        )


# ---------------------------------------------------------------------------------------- models, sweeps


@st.cache_data(ttl=30, show_spinner=False)
def _availability_label(model_id: str) -> str:
    from explorer.models.availability import availability

    return availability(model_id).label


def model_label(option: str) -> str:
    """A model list's entry: a configured model with where it loads from (``"smollm2-135m · embedded"``,
    ``"gpt2 · in the local cache"``, ``"EleutherAI/pythia-160m · needs the network"``); any other entry
    (the "other" choice) as it is."""
    return _availability_label(option) if option in app_config().models else option


LOADED: dict[str, float] = {}  # what cached_model holds, for the debug panel: model (device, dtype) -> load time


@st.cache_resource(max_entries=2, show_spinner=False)
def cached_model(model_id: str, device: str, dtype: str, revision: str | None, trust_remote_code: bool = False):
    """The model, loaded once per process (per id, device, dtype and revision) and shared by every
    session; and the load time. Concurrent sessions asking for the same model wait for one load."""
    from explorer.models.loading import load_model

    start = time.perf_counter()
    lm = load_model(model_id, device=device, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code)
    name = model_id + (f"@{revision}" if revision else "")
    LOADED[f"{name} ({device}, {dtype})"] = time.perf_counter() - start
    return lm, time.perf_counter() - start


@st.cache_resource(max_entries=1, show_spinner=False)
def sweep_store() -> SweepStore[SweepRequest, Sweep]:
    """One store per process, shared by every session."""
    cfg = app_config()
    return SweepStore(max_entries=cfg.cache_max_entries, max_bytes=cfg.cache_max_mb << 20)


@st.cache_resource(max_entries=1, show_spinner=False)
def strip_store() -> SweepStore[StripRequest, Strip]:
    """The Text strip page's computed strips: one store per process, bounded like the sweeps'."""
    cfg = app_config()
    return SweepStore(max_entries=cfg.cache_max_entries, max_bytes=cfg.cache_max_mb << 20)


def settings_for(weighting: str, mode: str, controls: bool = False, compare_modes: bool = False) -> Settings:
    """A page's trace settings under the configuration (its token cap)."""
    return Settings(
        weighting=weighting,
        mode=cast(Mode, mode),
        controls=controls,
        compare_modes=compare_modes,
        max_tokens=app_config().max_prompt_tokens,
    )


def sweep_request(
    model_id: str,
    device: str,
    dtype: str,
    revision: str | None,
    prompt: str,
    weighting: str,
    mode: str,
    controls: bool,
    compare_modes: bool,
    gold: str | None = None,
    position: int | None = None,
    target: str | None = None,
    foil: str | None = None,
) -> SweepRequest:
    """The request of a page's inputs under the configuration (its token cap and remote-code rule); an
    empty target or foil is the default."""
    cfg = app_config()
    if device not in device_options(cfg) or dtype not in dtype_options(cfg):
        raise BadSetting(
            f"the device {device!r} with dtype {dtype!r} is not offered here; choose one "
            f"of {', '.join(device_options(cfg))} and {', '.join(dtype_options(cfg))}"
        )
    return SweepRequest(
        model=model_id,
        device=device,
        dtype=dtype,
        revision=revision,
        prompt=prompt,
        settings=settings_for(weighting, mode, controls, compare_modes),
        gold=gold,
        trust_remote_code=cfg.trust_remote_code,
        position=position,
        target=target or None,
        foil=foil or None,
    )


def prompt_token_ids(model_id: str, device: str, dtype: str, revision: str | None, prompt: str):
    """The model (loaded if need be) and the prompt's token ids, whatever their number; ``None`` where
    there is nothing to count (no model, a model the configuration refuses or that fails to load, an empty
    prompt or one over the limit in characters): the sweep then says what is wrong."""
    cfg = app_config()
    if not model_id or not prompt.strip() or len(prompt) > max_prompt_chars(cfg):
        return None
    try:
        cfg.check_model(model_id)
        with st.spinner("loading the model"):
            lm, _ = cached_model(model_id, device, dtype, revision, cfg.trust_remote_code)
        return lm, list(lm.tokenizer(prompt)["input_ids"])
    except Exception:
        return None


def prompt_tokens(model_id: str, device: str, dtype: str, revision: str | None, prompt: str) -> list[str] | None:
    """The prompt's tokens as the model's tokenizer cuts them (the texts a trace names them by,
    :func:`explorer.token_text.token_text`); ``None`` where :func:`prompt_token_ids` has none or they are over
    the token cap."""
    found = prompt_token_ids(model_id, device, dtype, revision, prompt)
    if found is None or len(found[1]) > app_config().max_prompt_tokens:
        return None
    lm, ids = found
    return [token_text(lm.tokenizer, i) for i in ids]


def compute_sweep(request: SweepRequest, progress=None) -> Sweep:
    """The whole size sweep of one request, computed once for all sessions. The configuration's model
    list and the length in characters of the prompt, target and foil apply."""
    for what, text in (("prompt", request.prompt), ("target", request.target), ("foil", request.foil)):
        check_prompt_chars(text or "", what)
    app_config().check_model(request.model)
    report = progress or (lambda frac, msg: None)
    asked, computed_here = time.perf_counter(), []  # computed_here: this call computed it or waited for it

    def wait() -> None:
        computed_here.append("waited")
        report(0.0, "waiting: another session is tracing this prompt")

    def compute() -> Sweep:
        from explorer.trace import trace_prompt

        computed_here.append("computed")

        report(0.0, "loading the model")
        lm, load_s = cached_model(
            request.model, request.device, request.dtype, request.revision, request.trust_remote_code
        )
        start = time.perf_counter()
        trace = trace_prompt(
            lm,
            request.prompt,
            request.settings,
            gold=request.gold,
            progress=lambda f, m: report(0.05 + 0.85 * f, m),
            position=request.position,
            target=request.target,
            foil=request.foil,
        )
        return Sweep(trace, load_s, time.perf_counter() - start)

    sweep = sweep_store().get_or_compute(request, compute, on_wait=wait)
    return replace(sweep, cached=not computed_here, fetch_s=time.perf_counter() - asked)


COMPUTED_HERE = "sweeps_computed_here"  # the requests this session computed or waited for (a dict as an ordered set)


def time_metric(sweep: Sweep) -> dict:
    """The arguments of a page's "Time" metric (``st.metric(**time_metric(sweep))``): the trace's time and
    the model's load when this session computed it (or waited for it); ``cached`` and the time it took
    to fetch when it came from the store ready (computed before, by another session), its first
    computation under the help."""
    first = f"computed once in {sweep.trace_s:.1f} s (model load {sweep.load_s:.1f} s)"
    if sweep.cached:
        value, delta, help = "cached", f"fetched in {sweep.fetch_s:.2f} s", f"This sweep was {first}."
    else:
        value, delta, help = f"{sweep.trace_s:.1f} s", f"model load {sweep.load_s:.1f} s", None
    return dict(label="Time", value=value, delta=delta, help=help, delta_color="off", delta_arrow="off")


def with_progress(compute, progress_text=None):
    """``compute(progress)`` under a progress bar; a failure is shown as an error and gives ``None``.
    ``progress_text(fraction, message)`` words the bar (default: the message)."""
    bar = st.progress(0.0, text="starting")
    word = progress_text or (lambda frac, message: message)
    try:
        result = compute(lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=word(f, plain(m))))
    except ExplorerError as exc:
        bar.empty()
        st.error(plain(str(exc)))
        return None
    except Exception as exc:
        bar.empty()
        unexpected_error("while tracing", exc)
        return None
    bar.empty()
    return result


def sweep_with_progress(progress_text=None, **inputs) -> Sweep | None:
    """The sweep of the inputs (:func:`sweep_request`'s arguments) under a progress bar; a failure is shown
    as an error and gives ``None``. ``progress_text(fraction, message)`` words the bar (default: the
    message). A sweep this session computed (or waited for) is not ``cached`` on its later reruns (a
    slider move): its time is the one the visitor waited."""

    def compute(report) -> Sweep:
        request = sweep_request(**inputs)
        sweep = compute_sweep(request, progress=report)
        waited = st.session_state.setdefault(COMPUTED_HERE, {})
        if not sweep.cached:
            waited[request] = True
            while len(waited) > 32:  # the oldest first out
                waited.pop(next(iter(waited)))
        elif request in waited:
            sweep = replace(sweep, cached=False)
        return sweep

    return with_progress(compute, progress_text)


def compute_strip(request: StripRequest, progress=None) -> Strip:
    """The strip of one request (:func:`explorer.text.trace_text` of the text, or
    :func:`explorer.text.trace_continuation` of the prompt), computed once for all sessions. The text's
    length in characters is checked first."""
    check_prompt_chars(request.text, "text" if request.generation is None else "prompt")
    app_config().check_model(request.model)
    report = progress or (lambda frac, msg: None)

    def compute() -> Strip:
        from explorer.text import trace_continuation, trace_text

        report(0.0, "loading the model")
        lm, load_s = cached_model(
            request.model, request.device, request.dtype, request.revision, request.trust_remote_code
        )
        start = time.perf_counter()
        step = lambda f, m: report(0.02 + 0.97 * f, m)
        gen = request.generation
        if gen is None:
            text = trace_text(lm, request.text, request.settings, progress=step)
        else:
            report(0.01, f"generating {gen.n_tokens} tokens")
            text = trace_continuation(
                lm,
                request.text,
                gen.n_tokens,
                request.settings,
                temperature=gen.temperature,
                top_p=gen.top_p,
                greedy=gen.greedy,
                seed=gen.seed,
                progress=step,
            )
        return Strip.of(text, load_s, time.perf_counter() - start)

    return strip_store().get_or_compute(
        request, compute, on_wait=lambda: report(0.0, "waiting: another session is tracing this text")
    )


# ---------------------------------------------------------------------------------------- page sections


def section(title: str, caption: str, draw, *args, **kwargs) -> None:
    """Draw one section under a subheader and caption; an unexpected failure shows a message in place of
    the section instead of breaking the page."""
    st.subheader(title)
    st.caption(caption)
    try:
        draw(*args, **kwargs)
    except Exception as exc:
        LOG.error("the view %r could not be drawn", title, exc_info=exc)
        st.error(
            f"This view could not be drawn: {plain(str(exc))}"
            if not app_config().demo
            else f"This view could not be drawn ({type(exc).__name__})."
        )


def view(title: str, caption: str):
    """Decorator: the function draws a :func:`section`."""

    def wrap(draw):
        def run(*args, **kwargs):
            section(title, caption, draw, *args, **kwargs)

        return run

    return wrap


def restore_widgets(slot: str) -> None:
    """Put back the widget values a page saved with :func:`remember_widgets` and Streamlit dropped while
    another page was shown."""
    for key, value in st.session_state.get(slot, {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def remember_widgets(slot: str, keys) -> None:
    st.session_state[slot] = {k: st.session_state[k] for k in keys if k in st.session_state}
