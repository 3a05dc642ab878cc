"""The megaviewer desktop app (PySide6 + pyvistaqt).

The GUI only adapts engine results to widgets: ``state`` and ``scene`` are Qt-free (what is selected, and how a
result becomes displayable arrays), the widgets observe them, and ``workers`` keep inference off the UI thread.
Start it with :func:`megaviewer.gui.app.run`.
"""
