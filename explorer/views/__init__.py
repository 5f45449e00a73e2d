"""Pure builders for the Trace page's views: data frames, Altair charts and networkx/pyvis graphs.

Nothing here imports Streamlit; ``app.py`` lays the views out. Every builder takes a
:class:`explorer.trace.Trace` and the index of a stratum (the slider's position). :mod:`charts` gives the
same views to notebooks, addressed by size; :mod:`method` holds the Method page's figures.
"""
