"""The application layer, Qt-free: one detect -> crop -> recover -> export path for every front end.

``megaviewer infer`` (:mod:`megaviewer.cli`), the desktop app (:mod:`megaviewer.gui`) and the benchmarks
all recover people through :mod:`megaviewer.app.pipeline`, name and write files through
:mod:`megaviewer.app.exports`, and read their defaults from :mod:`megaviewer.settings`; the front ends
only parse arguments or drive widgets. :mod:`megaviewer.app.batch` is the headless batch run. Nothing is
imported here, so ``megaviewer --help`` stays instant.
"""
