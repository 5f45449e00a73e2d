"""What a visitor can do to the app and to other visitors, through its pages (AppTest): the token cap and the
word window of corpus runs, runs kept apart per session and the shipped results read-only, prompts capped
in characters before they are tokenised, devices and dtypes the host has, no traceback in demo mode,
Markdown from the URL or a prompt shown as text, the node graph's page in an opaque origin, and run names
relative to the runs folder. The browser's side of the node graph is in :mod:`tests.test_browser_graph`."""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path

import pytest
import streamlit as st
import torch
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer.corpus.store import shipped_root
from explorer.models.loading import cache_dir
from ui import state as app_state
from ui.safe import code, escape_md, plain

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
CORPUS, STRIP = "ui/pages/corpus.py", "ui/pages/strip.py"
TIMEOUT = 600
DEMO = ROOT / "config" / "demo.toml"
LINK = "[Session expired - click here](https://evil.example)"
IMAGE = "![t](http://127.0.0.1:9/t.png)"
SCRIPT = "The capital of France is <script>alert(1)</script>"
MD = MarkdownIt("commonmark", {"html": True}).enable(["strikethrough", "table"])


@pytest.fixture
def configured(monkeypatch, tmp_path):
    """Run the app under a configuration file (``None``: the built-in defaults), with its runs under a
    temporary folder; restore everything afterwards."""
    details = st.get_option("client.showErrorDetails")
    monkeypatch.setattr("ui.runs.runs_root", lambda: tmp_path / "runs")

    def use(text: str | None = None, path: Path | None = None):
        if text is not None:
            path = tmp_path / "app.toml"
            path.write_text(text)
        if path is None:
            monkeypatch.delenv("STRACE_CONFIG", raising=False)
        else:
            monkeypatch.setenv("STRACE_CONFIG", str(path))
        app_state._config_or_error.clear()

    yield use
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    app_state._config_or_error.clear()
    st.set_option("client.showErrorDetails", details)


def app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def on_page(path: str, query: dict | None = None) -> AppTest:
    """The app about to open ``path`` as a first visit: one run first on the Trace page, with a blank prompt
    (nothing traced), so that ``st.navigation`` has registered its pages."""
    at = app(prompt=" ").run()
    at.query_params.clear()
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.switch_page(path)
    return at


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def bodies(at: AppTest) -> list[str]:
    """Every string Streamlit renders as Markdown: message and Markdown bodies, labels, values, deltas,
    tooltips, expander labels, pills."""
    out = []
    for node in walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None or not hasattr(proto, "DESCRIPTOR"):
            continue
        fields = proto.DESCRIPTOR.fields_by_name
        if "expandable" in fields and proto.HasField("expandable"):
            out.append(proto.expandable.label)
        for name in ("body", "label", "help", "delta", "caption"):
            value = getattr(proto, name) if name in fields else None
            if isinstance(value, str) and value:
                out.append(value)
        if "options" in fields:
            out += [o.content for o in proto.options if hasattr(o, "content") and o.content]
    return out


def live_markdown(body: str) -> list[str]:
    """What in ``body`` renders as more than text: links, images, raw HTML (a script), and outside code
    spans the bare addresses and ``:directives:`` GitHub-flavoured Markdown and Streamlit make live."""
    rendered = MD.render(body)
    found = [tag for tag in ("<a ", "<img", "<script") if tag in rendered]
    source = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", body, flags=re.S)  # without its code spans
    found += re.findall(r"https?://|www\.|:[A-Za-z/][^\s:]*[:\[]", source, flags=re.I)
    return found


def no_live_markdown(at: AppTest) -> None:
    live = {b: live_markdown(b) for b in bodies(at)}
    assert not {b: f for b, f in live.items() if f}


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


# ------------------------------------------------------------------------------------------ Markdown (18)


def rendered_text(body: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", MD.render(body))).replace("\u200b", "").strip()


@pytest.mark.parametrize(
    "text",
    [
        LINK,
        IMAGE,
        SCRIPT,
        "a *b* _c_ `d` ``e`` :red[f] :smile: $x$ www.evil.example",
        "`",
        " ` x",
        "- item",
        "1. item",
        "<https://x.example>",
        "# heading",
        "x\n\n# y",
    ],
)
def test_the_helpers_show_text_as_itself(text):
    for shown in (escape_md(text), code(text), plain(text)):
        assert not live_markdown(shown), shown
    if "\n" not in text:
        assert rendered_text(escape_md(text)) == text.strip()
        assert rendered_text(code(text)) == text.strip()
    assert plain(text) == code(text)  # none of them is plain text
    assert (
        plain("no model folder at 'no-such-org/no-such-model-xyz'")
        == "no model folder at 'no-such-org/no-such-model-xyz'"
    )


@pytest.mark.parametrize("model", [LINK, IMAGE])
@pytest.mark.parametrize("demo", [True, False])
def test_markdown_in_the_url_makes_no_link_or_image(configured, model, demo):
    configured(path=DEMO if demo else None)
    at = app(model=model, prompt="Hello there").run()
    assert not at.exception
    shown = at.warning if demo else at.error
    assert any(model in m.value for m in shown), [m.value for m in shown]  # said, as code
    no_live_markdown(at)


def test_a_prompt_with_a_script_is_shown_as_text(configured):
    configured(None)
    at = ok(app(prompt=SCRIPT).run())
    no_live_markdown(at)
    assert any("script" in b for b in bodies(at))  # its tokens are shown (the pills), escaped
    data = graph_frame_data(at)
    assert "<script>alert(1)" not in data["page"] and "<script>alert(1)" not in html.unescape(data["page"])
    # the prompt's text reaches the graph only in tooltips, which vis-network writes as text
    for node in data["graph"]["nodes"]:
        assert all("script" not in str(v) for k, v in node.items() if k != "title"), node


# ----------------------------------------------------------------------------------- node graph page (19)


def graph_frame_data(at: AppTest) -> dict:
    """What the Trace page sends its node graph's component: ``page`` (with a full run of the script),
    ``graph`` (sent as JSON text), ``height``."""
    data = json.loads(at.get("bidi_component")[0].proto.json)
    return data | {"graph": json.loads(data["graph"])}


def test_the_node_graph_page_is_left_for_an_opaque_origin(configured):
    """The graph's page runs in a frame sandboxed without ``allow-same-origin`` (an opaque origin); the
    component's script in the app's page writes no HTML and passes on only a click on one of the graph's
    components. The browser's side: tests/test_browser_graph.py."""
    configured(None)
    at = ok(app(prompt="The capital of France is").run())
    component = at.get("bidi_component")[0].proto
    script = component.js_content
    assert 'setAttribute("sandbox", "allow-scripts allow-downloads")' in script and "allow-same-origin" not in script
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script
    assert "own.clickable.has(m.node)" in script and "event.source !== frame.contentWindow" in script
    assert not component.html_content
    page = graph_frame_data(at)["page"]
    assert "new vis.Network" in page and "innerHTML" not in page.split("new vis.Network", 1)[1]


# ---------------------------------------------------------------------------------- devices, errors (14)


def test_devices_and_dtypes_the_host_has(configured):
    configured(None)
    at = app(prompt=" ").run()
    devices = at.selectbox(key="device").options
    assert ("mps" in devices) == torch.backends.mps.is_available()
    assert ("cuda" in devices) == torch.cuda.is_available()
    assert devices[:2] == ["auto", "cpu"]
    configured(path=DEMO)
    at = app(prompt=" ").run()
    assert at.selectbox(key="device").options == ["auto"] and at.selectbox(key="dtype").options == ["auto"]
    assert st.get_option("client.showErrorDetails") == "type"  # Streamlit's own reports: no traceback


def test_the_demo_shows_no_traceback(configured, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("kaput in /srv/secret/path")

    monkeypatch.setattr("explorer.trace.trace_prompt", broken)
    configured(path=DEMO)
    with caplog.at_level(logging.ERROR, logger="s_trace_explorer.ui"):
        at = app(prompt="A prompt nobody traced before").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Unexpected error while tracing (RuntimeError); the details are in the server's log."
    ]
    assert not at.code and not [e for e in at.expander if e.label == "Details"]
    assert any(r.exc_info and "kaput" in str(r.exc_info[1]) for r in caplog.records), caplog.records
    configured(None)  # outside demo mode: the message, and the traceback under Details
    at = app(prompt="Another prompt nobody traced before").run()
    assert any("kaput" in e.value for e in at.error)
    assert any("Traceback" in c.value for c in at.code)


# -------------------------------------------------------------------------------- characters (13)


@pytest.fixture
def tokenised(monkeypatch):
    """The length of every text the embedded model's tokenizer is given."""
    lm, _ = app_state.cached_model("smollm2-135m", "auto", "auto", None, False)
    seen: list[int] = []
    cls = type(lm.tokenizer)
    call = cls.__call__

    def record(self, text, *args, **kwargs):
        if isinstance(text, str):
            seen.append(len(text))
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", record)
    return seen


def test_a_long_prompt_is_refused_before_it_is_tokenised(configured, tokenised):
    configured(path=DEMO)  # 64 tokens: at most 1,024 characters
    at = app(prompt="word " * 300).run()
    assert not at.exception
    assert any("1,500 characters; the limit here is 1,024" in e.value for e in at.error), [e.value for e in at.error]
    at = on_page(STRIP, {"text": "word " * 300}).run()
    assert any("1,500 characters" in e.value for e in at.error), [e.value for e in at.error]
    assert not [n for n in tokenised if n > 1024]


@pytest.fixture
def no_upload_left():
    yield
    for upload in (cache_dir() / "uploads").glob("long-*.txt"):
        upload.unlink()


def test_a_corpus_run_leaves_out_prompts_too_long_in_characters(configured, tokenised, tmp_path, no_upload_left):
    configured("max_prompt_tokens = 8\n")  # at most 128 characters
    at = on_page(CORPUS).run()
    at.radio(key="run_source").set_value("upload")
    at.file_uploader(key="run_upload").set_value(
        ("long.txt", ("The capital of France is\n" + "word " * 200 + "\n").encode(), "text/plain")
    )
    for key, value in (
        ("run_limit", 2),
        ("run_grid", "quick"),
        ("run_modes", ["all"]),
        ("run_controls", False),
        ("run_frequencies", False),
        ("run_out", str(tmp_path / "out")),
    ):
        getattr(
            at,
            {"run_limit": "number_input", "run_grid": "radio", "run_modes": "multiselect", "run_out": "text_input"}.get(
                key, "checkbox"
            ),
        )(key=key).set_value(value)
    [b for b in at.button if b.label == "Run"][0].click()
    at.run()
    assert not at.exception
    assert any("Traced 1 prompts" in s.value and "1 rows of the source left out" in s.value for s in at.success), [
        s.value for s in at.success
    ] + [e.value for e in at.error]
    assert not [n for n in tokenised if n > 128]


# ---------------------------------------------------------------------- corpus runs (11, 12, 20)


def test_a_demo_run_is_capped_kept_to_its_session_and_named_relative(configured, tmp_path):
    configured(path=DEMO)
    at = on_page(CORPUS).run()
    assert not at.exception
    assert "at most 48" in at.number_input(key="run_window").help  # about 64 tokens of English
    assert not [c for c in at.checkbox if c.key == "run_overwrite"]  # nothing is replaced
    at.radio(key="run_source").set_value("project")
    for key, value in (("run_limit", 1), ("run_grid", "quick"), ("run_modes", ["all"])):
        getattr(at, {"run_limit": "number_input", "run_grid": "radio", "run_modes": "multiselect"}[key])(
            key=key
        ).set_value(value)
    at.checkbox(key="run_controls").set_value(False)
    at.checkbox(key="run_frequencies").set_value(False)
    [b for b in at.button if b.label == "Run"][0].click()
    ok(at.run())
    session = at.session_state["corpus_session_id"]
    folders = list((tmp_path / "runs" / "sessions" / session).iterdir())
    assert len(folders) == 1
    run = json.loads((folders[0] / "run.json").read_text())
    assert run["settings"]["max_tokens"] == 64
    name = f"runs/sessions/{session}/{folders[0].name}"
    message = " ".join(s.value for s in at.success)
    assert name in message and str(tmp_path) not in message
    assert name in str(at.query_params["results"]) and str(tmp_path) not in str(dict(at.query_params))
    # another visitor opens it from the link, read-only; a name that leaves the runs folder is ignored
    at = on_page(CORPUS, {"results": [name, "runs/../../etc", "runs/" + str(tmp_path / "runs")]}).run()
    assert not at.exception
    assert at.multiselect(key="corpus_results").value == [name]


def test_the_shipped_results_are_read_only(configured, monkeypatch):
    started = []
    monkeypatch.setattr("ui.corpus_run.start_corpus_run", lambda request: started.append(request))
    configured(None)
    at = on_page(CORPUS).run()
    at.text_input(key="run_out").set_value(str(shipped_root() / "smollm2-135m"))
    at.checkbox(key="run_overwrite").set_value(True)
    [b for b in at.button if b.label == "Run"][0].click()
    at.run()
    assert not at.exception and not started
    assert any("read-only" in e.value for e in at.error), [e.value for e in at.error]
