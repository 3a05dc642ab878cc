"""The megaviewer desktop app (PySide6 + pyvistaqt): widgets, presenters and threads only.

Detection, recovery, file names and writers are the Qt-free application layer's (:mod:`megaviewer.app`),
shared with ``megaviewer infer``. Here ``state`` and ``scene`` are Qt-free too (what is selected, and how a
result becomes displayable arrays), the widgets observe them, the presenter draws, the session runs the
application layer on ``workers`` threads to keep the window responsive. Start it with
:func:`megaviewer.gui.app.run`.
"""
