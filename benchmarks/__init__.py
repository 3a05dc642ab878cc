"""Speed measurements of megaviewer, kept out of the runtime package (they import ``training`` and write
their reports into ``resources/bench/``). Run them through ``scripts/bench.py`` and its siblings."""
