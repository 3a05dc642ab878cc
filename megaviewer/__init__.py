"""megaviewer: masked generative human mesh recovery (MEGA) — library, engine and desktop app.

The public API is re-exported lazily so that ``import megaviewer`` stays cheap (no torch, Qt or Anny
import until something is used).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
