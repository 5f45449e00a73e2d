"""Corpus runs: prompt sources, unigram frequencies, the Parquet results store, the run loop, and the
statistics the Corpus and Compare pages show."""
