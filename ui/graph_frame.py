"""The node graph on the Trace page, linked both ways with the component inspector: a Streamlit component
(``st.components.v2``) that holds the graph's page (:func:`explorer.views.graph_page.frame_page`) in a
sandboxed frame and posts each size's graph to it; a click on a component in the graph comes back as the
component's ``clicked`` trigger, and the page's callback makes it the inspector's choice.

The frame is ``sandbox="allow-scripts allow-downloads"`` (downloads for its "Save as PNG") without
``allow-same-origin``: the graph's page (vis-network and text from the prompt in its tooltips) runs in an
opaque origin and reaches nothing of the app. The component's own script, which runs in the app's page,
only creates that frame, posts the graph to it, and passes on a click whose name is one of the graph's
components (``clickable``); it never writes HTML.
"""

from __future__ import annotations

from collections.abc import Callable

from streamlit.components.v2 import component

from explorer.views import graph_page

NAME = "strace_node_graph"
FRAME_HEIGHT = 700

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
    own.post = () => own.frame.contentWindow.postMessage({ type: "strace-graph", graph: own.graph }, "*");
    window.addEventListener("message", own.listener);
    frame.addEventListener("load", () => {
      if (!frame.srcdoc) return;  // the blank page an empty frame loads when it is attached
      own.loaded = true;
      own.post();
    });
    parentElement.appendChild(frame);
  }
  own.send = (node) => setTriggerValue("clicked", node);
  own.clickable = new Set(data.graph.clickable);
  own.graph = data.graph;
  own.frame.style.height = data.height + "px";
  if (own.page !== data.page) {
    own.page = data.page;
    own.loaded = false;
    own.frame.srcdoc = data.page;
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


def node_graph_frame(graph_data: dict, key: str, on_click: Callable[[], None], height: int = FRAME_HEIGHT):
    """Draw the graph (:func:`explorer.views.graph_page.graph_data`) in its frame; ``on_click`` runs when
    a component is clicked, with ``st.session_state[key].clicked`` its name."""
    page = graph_page.frame_page(height)
    return _component(
        data={"page": page, "graph": graph_data, "height": height},
        key=key,
        height=height,
        on_clicked_change=on_click,
    )
