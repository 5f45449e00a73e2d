"""Views below the first screen, redrawn when they come into view: a page part (a Streamlit fragment of its
own) that follows another part's state without being redrawn at each of its changes.

:func:`publish` (in the leading part, redrawn at each change: a move of the size slider) tells the browser
tab which view is on show, as a key; :func:`follow` (in the following part) says which key that part was
drawn for. When the two differ and the following part is in view (its top above the window's bottom), its
script asks once for a rerun of its fragment, which draws it at the view on show; so a slider move re-draws
the views on screen only, and the others when the page is scrolled to them.

A key is ``"<group>:<view>"``: a follower ignores keys of another group (another trace's, published before
this run's). The follower's element holds its key in a hidden ``span[data-view]`` (for tests).
"""

from __future__ import annotations

from streamlit.components.v2 import component

NAME = "strace_view_sync"

JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (data.role === "publish") {
    if (window.__straceView !== data.key) {
      window.__straceView = data.key;
      window.dispatchEvent(new Event("strace-view"));
    }
    return;
  }
  const host = parentElement.host || parentElement;
  let own = parentElement.__straceFollow;
  if (!own) {
    own = parentElement.__straceFollow = { pending: false, asked: null };
    own.mark = document.createElement("span");
    own.mark.hidden = true;
    parentElement.appendChild(own.mark);
    own.check = () => {
      own.pending = false;
      const want = window.__straceView;
      if (typeof want !== "string" || want === own.drawn || want === own.asked) return;
      if (want.split(":")[0] !== own.drawn.split(":")[0]) return;
      if (host.getBoundingClientRect().top > window.innerHeight) return;  // below the window
      own.asked = want;
      own.ask(want);
    };
    own.soon = () => {
      if (!own.pending) {
        own.pending = true;
        requestAnimationFrame(own.check);
      }
    };
    window.addEventListener("strace-view", own.soon);
    window.addEventListener("resize", own.soon);
    document.addEventListener("scroll", own.soon, { capture: true, passive: true });
  }
  own.ask = (want) => setTriggerValue("stale", want);
  own.drawn = data.key;
  own.mark.dataset.view = data.key;
  own.soon();
  return () => {
    window.removeEventListener("strace-view", own.soon);
    window.removeEventListener("resize", own.soon);
    document.removeEventListener("scroll", own.soon, { capture: true });
    own.mark.remove();
    delete parentElement.__straceFollow;
  };
}
"""

_component = component(NAME, js=JS)


def view_key(group: str, view: object) -> str:
    """The key of ``view`` (e.g. a stratum's index) within ``group`` (e.g. a trace)."""
    return f"{group}:{view}"


def publish(key: str) -> None:
    """Tell the browser tab that the view ``key`` is on show (an element without content)."""
    _component(data={"role": "publish", "key": key}, key="view_sync_publish")


def _stale() -> None:
    """The follower asked for its rerun: its fragment's script reads the view on show itself."""


def follow(key: str) -> None:
    """Mark this fragment as drawn for view ``key``: the browser reruns it once another view is on show and
    it is in view (an element without content)."""
    _component(data={"role": "follow", "key": key}, key="view_sync_follow", on_stale_change=_stale)
