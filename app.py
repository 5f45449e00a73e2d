"""s-Trace Explorer, the app's entry: ``streamlit run app.py`` (``-- --config PATH`` or ``$STRACE_CONFIG``
for a configuration file).

The frame every page shares: the navigation over the pages (:mod:`ui.nav`: Trace a prompt, Corpus,
Compare, Method, Text strip, Prompt pairs), the page's title and wide layout, the configuration (a bad file
stops here with its message) and, in demo mode, the demo banner and no error details from Streamlit itself
(the type of an uncaught exception only; its traceback goes to the server's log); then the chosen page runs
(:mod:`ui.pages`).
"""

from __future__ import annotations

import streamlit as st

from ui.nav import pages
from ui.state import app_config, demo_banner, show_error_details

page = st.navigation(pages())
st.set_page_config(page_title=f"{page.title} · s-Trace Explorer", layout="wide")
cfg = app_config()
show_error_details(cfg)
demo_banner(cfg)
page.run()
