"""The node graph on the Trace page, linked both ways with the component inspector: a Streamlit component
(``st.components.v2``) that holds the graph's page (:func:`explorer.views.graph_page.frame_page`) in a
sandboxed frame and posts each size's graph to it; a click on a component in the graph comes back as the
component's ``clicked`` trigger, and the page's callback makes it the inspector's choice.

What a slider move sends is light: the graph as JSON text, and the frame's page (vis-network, half a
megabyte) only with a full run of the script; the component's script keeps the page for the browser tab's
life, and asks for it (``need_page``) in the one case it lacks it.

The frame is ``sandbox="allow-scripts allow-downloads"`` (downloads for its "Save as PNG") without
``allow-same-origin``: the graph's page (vis-network and text from the prompt in its tooltips) runs in an
opaque origin and reaches nothing of the app. The component's own script, which runs in the app's page,
only creates that frame, posts the graph to it, and passes on a click whose name is one of the graph's
components (``clickable``); it never writes HTML.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache

import streamlit as st
from streamlit.components.v2 import component
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer.views import graph_page

NAME = "strace_node_graph"
FRAME_HEIGHT = 700
NEED_PAGE = "node_graph_need_page"  # session state: send the page with the next draw

JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let own = parentElement.__straceGraph;
  if (!own) {
    own = parentElement.__straceGraph = { loaded: false };
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "allow-scripts allow-downloads");  // the graph's "Save as PNG"
    frame.setAttribute("title", "node graph");
    frame.style.width = "100%";
    frame.style.border = "0";
    frame.style.display = "block";
    own.frame = frame;
    own.listener = (event) => {
      const m = event.data;
      if (event.source !== frame.contentWindow || !m || m.type !== "strace-node") return;
      if (typeof m.node === "string" && own.clickable.has(m.node)) own.send(m.node);
    };
    own.post = () => own.frame.contentWindow.postMessage({ type: "strace-graph", graph: own.graph }, "*");  // JSON text
    window.addEventListener("message", own.listener);
    frame.addEventListener("load", () => {
      if (!frame.srcdoc) return;  // the blank page an empty frame loads when it is attached
      own.loaded = true;
      own.post();
    });
    parentElement.appendChild(frame);
  }
  own.send = (node) => setTriggerValue("clicked", node);
  const pages = (window.__straceGraphPages = window.__straceGraphPages || {});  // for the tab's life
  if (data.page) pages[data.page_id] = data.page;
  own.graph = data.graph;
  own.clickable = new Set(JSON.parse(data.graph).clickable);
  own.frame.style.height = data.height + "px";
  if (own.page !== data.page_id && !pages[data.page_id]) {
    setTriggerValue("need_page", data.page_id);  // a rerun that sends it
  } else if (own.page !== data.page_id) {
    own.page = data.page_id;
    own.loaded = false;
    own.frame.srcdoc = pages[data.page_id];
  } else if (own.loaded) {
    own.post();
  }
  return () => {
    window.removeEventListener("message", own.listener);
    own.frame.remove();
    delete parentElement.__straceGraph;
  };
}
"""

_component = component(NAME, js=JS)


@lru_cache(maxsize=4)
def page_id(height: int) -> str:
    """A digest of the frame's page at ``height``: the component's script keeps pages by it."""
    return hashlib.sha256(graph_page.frame_page(height).encode()).hexdigest()[:16]


def _need_page() -> None:
    st.session_state[NEED_PAGE] = True


def full_run() -> bool:
    """Whether the script runs whole (not only a fragment): a new page of the app, a reload, a new session."""
    ctx = get_script_run_ctx()
    return ctx is None or not ctx.fragment_ids_this_run


def node_graph_frame(graph_json: str, key: str, on_click: Callable[[], None], height: int = FRAME_HEIGHT):
    """Draw the graph (:func:`explorer.views.graph_page.graph_data` as JSON text) in its frame; ``on_click``
    runs when a component is clicked, with ``st.session_state[key].clicked`` its name. The page goes with
    a full run of the script, or when the component asked for it."""
    asked = bool(st.session_state.pop(NEED_PAGE, False))
    send = asked or full_run()
    return _component(
        data={
            "page": graph_page.frame_page(height) if send else None,
            "page_id": page_id(height),
            "graph": graph_json,
            "height": height,
        },
        key=key,
        height=height,
        on_clicked_change=on_click,
        on_need_page_change=_need_page,
    )
