"""The Streamlit app's code: ``app.py`` is the frame (configuration, page setup, demo banner, navigation)
and runs one of the pages in :mod:`ui.pages`; :mod:`ui.nav` names the pages and opens a prompt on the
Trace page from another; :mod:`ui.state` holds the configuration, the model and sweep caches and the
widget state; :mod:`ui.results` the results choice and views that the Corpus and Compare pages share;
:mod:`ui.corpus_run` the Corpus page's run form. The work itself is done by :mod:`explorer`."""
