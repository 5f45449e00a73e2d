"""The app's pages, each a page file for ``st.Page`` (see :mod:`ui.nav`): ``trace.py`` (Trace a prompt),
``corpus.py``, ``compare.py`` and ``method.py``. Each runs its ``main()`` when Streamlit runs it."""
