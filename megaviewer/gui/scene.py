"""From a :class:`RecoveryResult` to displayable arrays: meshes per (sample, step), colours, heatmap values.

Qt-free. :class:`BodyScene` holds what depends only on the body topology and tokenizer (display upsampling,
the token region of every vertex); :class:`ResultMeshes` decodes a result's per-step meshes lazily through
``engine.decode_tokens`` and caches them, so scrubbing back and forth costs one decode per step at most.

Frames: results are in the OpenCV camera frame (y down, z forward). The viewport uses a y-up frame with the
viewer on +z, ``TO_DISPLAY = diag(1, -1, -1)``, so the default view is what the camera saw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from megaviewer.body.assets import BodyAssets
from megaviewer.result import RecoveryResult

BODY_RGB = np.array([176, 196, 226], np.uint8)  # pale blue clay, readable on the dark theme
MASKED_RGB = np.array([92, 94, 102], np.uint8)  # tokens still masked at this step (paper Fig. 3 grey)
REVEALED_RGB = np.array([255, 150, 40], np.uint8)  # tokens revealed by this very step
REFERENCE_RGB = np.array([236, 200, 120], np.uint8)  # the deterministic reference in compare mode
TO_DISPLAY = np.diag([1.0, -1.0, -1.0])
FLIP_X = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


class BodyScene:
    """Topology-level constants: faces, display upsampling and the token id of every vertex."""

    def __init__(self, assets: BodyAssets, centres: np.ndarray):
        self.assets = assets
        self.faces = assets.faces.numpy().astype(np.int64)
        self.display_faces = assets.display_faces.numpy().astype(np.int64)
        self.num_tokens = int(len(centres))
        template = assets.template.numpy()
        dist = np.linalg.norm(template[:, None, :] - template[centres][None, :, :], axis=-1)
        self.vertex_token = dist.argmin(axis=1)  # (V,) region = nearest token centre
        dominant = assets.display_idx.numpy()[np.arange(assets.num_display_vertices),
                                              assets.display_weights.numpy().argmax(axis=1)]
        self.display_token = self.vertex_token[dominant]  # (Vd,)

    @classmethod
    def for_engine(cls, engine) -> BodyScene:
        """The scene of the engine's body: its assets (a model on the user's SMPL topology brings them in its
        tokenizer folder) and the token centres of its tokenizer (which its checkpoint's tables hold)."""
        tokenizer = engine.tokenizer
        assets = engine.assets if hasattr(engine, "assets") else BodyAssets.for_tokenizer(tokenizer)
        return cls(assets, tokenizer.token_vertices)

    def upsample(self, vertices: np.ndarray | torch.Tensor) -> np.ndarray:
        """Working (V, 3) -> smooth display mesh (Vd, 3); always show this one."""
        tensor = torch.as_tensor(np.asarray(vertices), dtype=torch.float32)
        return self.assets.upsample(tensor).numpy()

    def upsample_scalars(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """Per-vertex scalars (V,) -> display vertices (Vd,) with the same affine weights."""
        values = torch.as_tensor(np.asarray(values), dtype=torch.float32)
        gathered = values[self.assets.display_idx]
        return (gathered * self.assets.display_weights.float()).sum(dim=-1).numpy()

    def token_colours(self, visible: np.ndarray, revealed: np.ndarray, display: bool = True) -> np.ndarray:
        """RGB per vertex for a generation step: masked regions grey, this step's reveals highlighted."""
        token = self.display_token if display else self.vertex_token
        rgb = np.tile(BODY_RGB, (len(token), 1))
        rgb[~visible[token]] = MASKED_RGB
        rgb[revealed[token]] = REVEALED_RGB
        return rgb


class ResultMeshes:
    """Meshes of one result for any (sample, step), decoded on demand and cached.

    ``sample`` is a hypothesis index, or ``-1`` for the mean of the Q hypotheses; ``step`` is a trace index
    or ``None`` for the finished mesh. Per-step meshes decode ``where(visible, tokens, 0)`` (paper Fig. 3).
    """

    def __init__(self, result: RecoveryResult, decode: Callable[[torch.Tensor], torch.Tensor]):
        self.result = result
        self._decode = decode
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        if result.mode == "unconditional":
            # No camera: show the canonical body upright and facing the viewer.
            self._rotation = FLIP_X.expand(result.num_samples, 3, 3)
        else:
            self._rotation = result.rotation.float()

    @property
    def num_steps(self) -> int:
        return int(self.result.trace.tokens.shape[0]) if self.result.trace is not None else 0

    def masks(self, sample: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(visible, revealed) token masks (N,) after ``step`` of hypothesis ``sample``."""
        trace = self.result.trace
        return trace.visible[step, sample].numpy(), trace.revealed[step, sample].numpy()

    def step_tokens(self, sample: int, step: int) -> torch.Tensor:
        trace = self.result.trace
        return torch.where(trace.visible[step, sample], trace.tokens[step, sample], 0)

    def canonical(self, sample: int, step: int | None = None) -> torch.Tensor:
        if sample < 0:
            return self.result.mean_canonical.float()
        if step is None or self.result.trace is None:
            return self.result.canonical_vertices[sample].float()
        key = (sample, step)
        if key not in self._cache:
            self._cache[key] = self._decode(self.step_tokens(sample, step)[None])[0].float()
        return self._cache[key]

    def prefetch(self, sample: int) -> None:
        """Decode every step of one hypothesis in one batch (cheaper than T single decodes)."""
        missing = [t for t in range(self.num_steps) if (sample, t) not in self._cache]
        if missing:
            tokens = torch.stack([self.step_tokens(sample, t) for t in missing])
            for t, verts in zip(missing, self._decode(tokens), strict=True):
                self._cache[(sample, t)] = verts.float()

    def rotation(self, sample: int) -> torch.Tensor:
        return self._rotation[max(sample, 0)]

    def camera(self, sample: int, step: int | None = None) -> np.ndarray:
        """Camera-frame vertices (V, 3): the selected mesh placed where the model put the person."""
        if sample < 0 and step is None:
            return self.result.mean_camera.numpy()
        q = max(sample, 0)
        oriented = self.canonical(sample, step) @ self.result.rotation[q].float().T
        return (oriented + self.result.translation[q].float()).numpy()

    def before_fit(self, sample: int, frame: str = "display") -> np.ndarray | None:
        """Hypothesis ``sample``'s body before the fit to the keypoints, in the viewport ("display") or camera
        frame; None when the result was not refined or for the mean."""
        placed = self.result.before_fit
        if placed is None or sample < 0:
            return None
        if frame == "camera":
            return placed.camera_vertices(sample).float().numpy()
        oriented = placed.canonical_vertices[sample].float() @ placed.rotation[sample].float().T
        return (oriented.numpy() @ TO_DISPLAY.T).astype(np.float32)

    def display(self, sample: int, step: int | None = None) -> np.ndarray:
        """Working-mesh vertices (V, 3) in the viewport frame (centred, y up, facing the viewer)."""
        oriented = self.canonical(sample, step) @ self.rotation(sample).T
        return (oriented.numpy() @ TO_DISPLAY.T).astype(np.float32)
