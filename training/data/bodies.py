"""Which body the training meshes are posed through: Anny (shipped, the default) or the user's SMPL / SMPL-H file.

Why a small spec instead of a body object in every config: configs are dataclasses written to JSON and
compared on resume, and building a body can be slow (Anny) or need a licensed file that only the user has
(SMPL). The spec names the body and where its file is; :meth:`BodySpec.load` builds it when meshes are
actually posed, with a clear message when the SMPL file is missing or unusable.
"""

from __future__ import annotations

from dataclasses import dataclass

BODIES: tuple[str, ...] = ("anny", "smpl", "smplh")
USER_BODIES: tuple[str, ...] = ("smpl", "smplh")


@dataclass(frozen=True)
class BodySpec:
    """``name``: one of :data:`BODIES`; ``model_path``: the user's model file or a folder holding it (SMPL /
    SMPL-H only, see :func:`megaviewer.body.smpl_body.resolve_model_file`); ``gender``: which file of a folder."""

    name: str = "anny"
    model_path: str | None = None
    gender: str = "neutral"

    def __post_init__(self) -> None:
        if self.name not in BODIES:
            raise ValueError(f"unknown body {self.name!r}; choose one of {BODIES}")

    @property
    def needs_model_file(self) -> bool:
        return self.name in USER_BODIES

    def check(self) -> None:
        """Raise a ValueError naming what to pass when an SMPL body has no model file."""
        if self.needs_model_file and not self.model_path:
            from megaviewer.body.smpl_body import LICENCE_NOTE

            raise ValueError(f"--body {self.name} needs --model-path: your own {self.name.upper()} model file "
                             f"(.npz or chumpy-free .pkl) or the folder holding it. {LICENCE_NOTE}")

    def load(self):
        """The :class:`~megaviewer.body.base.BodyModel` (building Anny takes a while when its cache is cold)."""
        from megaviewer.body import create_body_model

        self.check()
        if self.needs_model_file:
            return create_body_model(self.name, model_path=self.model_path, gender=self.gender)
        return create_body_model(self.name)

    def meshes(self, prior_kind: str = "keyposes"):
        """:class:`~training.data.meshes.SyntheticMeshes` of this body from the named pose prior."""
        from training.data.meshes import SyntheticMeshes

        return SyntheticMeshes(body=self.load(), prior_kind=prior_kind)


def add_body_arguments(parser, default: str | None = "anny", what: str = "the meshes") -> None:
    """``--body``, ``--model-path`` and ``--gender`` of the ``megaviewer-train`` commands that pose meshes."""
    parser.add_argument("--body", choices=BODIES, default=default,
                        help=f"body model of {what}: anny (shipped) or smpl / smplh through your own model file")
    parser.add_argument("--model-path", default=None,
                        help="SMPL / SMPL-H: your model file (.npz or chumpy-free .pkl) or the folder holding it")
    parser.add_argument("--gender", choices=("neutral", "male", "female"), default="neutral",
                        help="SMPL / SMPL-H: which model file of a folder (default neutral)")
