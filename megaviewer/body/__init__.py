"""Body models behind one small interface (see :class:`BodyModel`)."""

from megaviewer.body.base import BodyModel, BodyParams, canonicalize
from megaviewer.body.keypoints import COCO17_NAMES

__all__ = ["BodyModel", "BodyParams", "canonicalize", "COCO17_NAMES", "create_body_model"]


def create_body_model(name: str = "anny", **kwargs) -> BodyModel:
    """Build a body model by name: ``anny`` (default, offline) or ``smpl``/``smplh`` (user model files)."""
    if name == "anny":
        from megaviewer.body.anny_body import AnnyBody

        return AnnyBody(**kwargs)
    if name in ("smpl", "smplh"):
        from megaviewer.body.smpl_body import SmplBody

        return SmplBody(model_type=name, **kwargs)
    raise ValueError(f"unknown body model {name!r}; choose 'anny', 'smpl' or 'smplh'")
