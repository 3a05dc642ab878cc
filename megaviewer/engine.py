"""The inference engine: one object that turns observations (2D keypoints and/or an image crop) into
meshes, for the CLI, the GUI, the benchmarks and library users.

``Engine.from_pretrained()`` loads the shipped default (``resources/default`` + ``resources/tokenizer``)
on CUDA when available, else the CPU. A checkpoint folder with a ``tokenizer/`` subfolder (what
``megaviewer-train pretrain`` / ``train`` write) brings its own tokenizer, and with it its body: a model
trained on the user's SMPL topology finds its faces and COCO regressor in that tokenizer's
``body.safetensors`` (:meth:`~megaviewer.body.assets.BodyAssets.for_tokenizer`). ``recover`` runs
deterministic (one decoder pass with the cached encoder constant) or stochastic generation (Q samples in one
batch, T steps) and decodes only the tokens it returns; the trace's per-step meshes are decoded lazily by
:meth:`decode_tokens` when a viewer asks.

GPU options (``Engine(..., half=True, compile=True)`` or the same keywords on ``from_pretrained``), applied
only when the device is CUDA and ignored elsewhere (on a CPU fp16 matmuls are slower, not faster, and
``torch.compile`` costs a C++ toolchain and a long first call for a model this small):

- ``half``: recover / unconditional / decode_tokens run under ``torch.autocast(float16)``. Weights stay
  float32, so nothing else needs a dtype (inputs, caches, checkpoints); matmuls, convolutions and
  attention run in fp16 while LayerNorm, softmax and the sampler's logits stay float32. Tokens can differ
  from float32 where two logits are within fp16 round-off.
- ``compile``: every transformer block of the model(s) is wrapped by ``torch.compile(dynamic=True)``
  (block-level, so the varying number of visible tokens per step and the varying batch Q do not trigger a
  recompile per shape). The first calls are slow (compilation). The tokenizer decodes through its cached
  inference route (``VcConv.infer``: a few large matmuls per layer), uncompiled.

Any checkpoint: the model may read an image crop, keypoints and/or landmarks (``kinds``; :meth:`label` says
which, with the body). Image crops are cut from the photo by :func:`megaviewer.vision.crops.person_crop`
(:func:`megaviewer.app.pipeline.recover_person` does it for image-conditioned models); a model that needs one
and gets none is a one-line error.

Camera fit (``fit_camera``, on by default): whenever keypoints are passed every hypothesis's global rotation and
weak-perspective camera are fitted to them (:mod:`megaviewer.camera_fit`), also for a model that reads only the
image, so the mesh sits on the person in the photo; the network's own rotation and
camera stay in the result (``network_rotation`` / ``network_cam``) with the fit's report (``camera_fit``).
Pass ``fit_camera=False`` to ``Engine`` (the default for every call) or to ``recover`` (one call) for the
raw network placement. The fit, and after it the fit of the bodies (``refine``, :mod:`megaviewer.refine`), run through
:func:`megaviewer.keypoint_fit.fit_to_keypoints`, which the benchmark's ``placement="engine"`` runs too.

Camera: with a crop box the meshes are placed in the photo's camera frame, with the box's ``focal`` (the
photo's, from :mod:`megaviewer.intrinsics`) or, when the box has none, a 55° diagonal field of view
(:func:`megaviewer.camera.default_focal`). The detector's 3D landmarks, when passed (``landmarks_3d``), are
checked and kept in the result (:mod:`megaviewer.vision.landmarks`), and a model conditioned on them reads
them (without them it gets zeros: "no landmarks").

Defaults of ``recover`` (mode, Q, T, temperature, seed, camera fit) come from
:data:`megaviewer.settings.DEFAULTS`, the same values the command line and the app start from. Timings
(``result.timings_ms``) are measured per stage, each on its own clock: ``generate_ms`` (the transformer),
``decode_ms`` (the tokenizer), ``camera_fit_ms`` (when the fit ran) and ``place_ms`` (rotation, camera and
joints); on CUDA each stage ends with a synchronisation so the time is the stage's, not a later one's.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from megaviewer import generate
from megaviewer.body.assets import BodyAssets
from megaviewer.geometry.rotations import rot6d_to_matrix
from megaviewer.keypoint_fit import fit_to_keypoints
from megaviewer.model.mega import Mega, load_mega
from megaviewer.refine import RefineConfig
from megaviewer.result import Placement, RecoveryResult
from megaviewer.settings import DEFAULTS, MODES
from megaviewer.tokenizer.model import MeshVQVAE


@dataclass
class CropBox:
    """Square crop in the full image: centre (x, y) and side, in pixels, plus the image size (W, H).

    ``focal`` is the photo's focal length in pixels of ``image_size`` (``None``: a 55° diagonal field of
    view) and ``focal_source`` where it came from (:data:`megaviewer.intrinsics.SOURCES`).
    """

    center: tuple[float, float]
    side: float
    image_size: tuple[int, int]
    focal: float | None = None
    focal_source: str | None = None


TOKENIZER_SUBDIR = "tokenizer"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tokenizer_folder(model_dir: str | Path, tokenizer_path: str | Path | None = None) -> Path:
    """The tokenizer of a MEGA checkpoint folder: ``tokenizer_path`` when given, else the folder's ``tokenizer/``
    (the copy ``megaviewer-train`` keeps of the tokenizer the run used) when it holds one, else the shipped one."""
    from megaviewer.paths import tokenizer_dir

    if tokenizer_path is not None:
        return Path(tokenizer_path)
    own = Path(model_dir) / TOKENIZER_SUBDIR
    return own if (own / "config.json").exists() else tokenizer_dir()


def check_tokenizer_fits(model: Mega, tokenizer: MeshVQVAE, what: str = "model") -> None:
    """Refuse a tokenizer whose token count or codebook size is not the one ``model`` was trained on."""
    if model.config.seq_len != tokenizer.num_tokens or model.config.vocab != tokenizer.config.num_codes:
        raise ValueError(f"{what} expects {model.config.seq_len} tokens over {model.config.vocab} codes but "
                         f"the tokenizer has {tokenizer.num_tokens} over {tokenizer.config.num_codes}")


def _in_precision(method: Callable) -> Callable:
    """Run an Engine method inside the engine's precision scope (fp16 autocast when ``half`` is active).

    A decorator rather than a ``with`` block in each method so the methods' bodies stay as they are.
    """
    @functools.wraps(method)
    def wrapper(self: Engine, *args, **kwargs):
        with self._precision():
            return method(self, *args, **kwargs)

    return wrapper


def model_name(folder: Path) -> str:
    """What the app and ``infer`` call a checkpoint folder: its name, or its run's for a run's ``final/``
    (``runs/my_model/final`` -> ``my_model``), which is how people name what they trained."""
    folder = Path(folder)
    return folder.parent.name if folder.name == "final" and folder.parent.name else folder.name


class Engine:
    def __init__(self, model: Mega, tokenizer: MeshVQVAE, coco_regressor: torch.Tensor,
                 device: torch.device | str | None = None, name: str = "custom",
                 unconditional_model: Mega | None = None, half: bool = False, compile: bool = False,
                 faces: torch.Tensor | None = None, fit_camera: bool = DEFAULTS.fit_camera,
                 assets: BodyAssets | None = None):
        """``assets``: the topology data of the tokenizer's body (default: found from the tokenizer)."""
        self.device = torch.device(device) if device is not None else default_device()
        self._assets = assets
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer.to(self.device).eval()
        self.unconditional_model = unconditional_model.to(self.device).eval() if unconditional_model else None
        self.coco_regressor = coco_regressor.to(self.device, torch.float32)
        self.faces = faces if faces is not None else self._faces()
        self.name = name
        self.fit_camera = bool(fit_camera)  # default of recover(fit_camera=None); see the module docstring
        self.refine_config = RefineConfig()  # the fit of the bodies to the keypoints (megaviewer.refine)
        check_tokenizer_fits(model, tokenizer)
        on_cuda = self.device.type == "cuda"
        self.half = bool(half) and on_cuda  # see the module docstring: CUDA only, ignored elsewhere
        self.compiled = bool(compile) and on_cuda
        if self.compiled:
            self._compile_modules()

    def _precision(self) -> contextlib.AbstractContextManager:
        if self.half:
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def _compile_modules(self, **compile_kwargs) -> None:
        """``torch.compile`` each transformer block in place (module docstring)."""
        from megaviewer.model.transformer import Block

        options = {"dynamic": True, **compile_kwargs}
        for model in (self.model, self.unconditional_model):
            if model is None:
                continue
            for module in model.modules():
                if isinstance(module, Block):
                    module.compile(**options)

    def _faces(self) -> torch.Tensor:
        return self.assets.faces

    @property
    def assets(self) -> BodyAssets:
        """Faces, template, COCO regressor and display upsampling of the body the tokenizer decodes: what exports,
        renders and the app draw with (loaded on first use when the engine was built without them)."""
        if self._assets is None:
            self._assets = BodyAssets.for_tokenizer(self.tokenizer)
        return self._assets

    # ---------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: torch.device | str | None = None,
                        tokenizer_path: str | Path | None = None, half: bool = False,
                        compile: bool = False, fit_camera: bool = DEFAULTS.fit_camera) -> Engine:
        """Load a MEGA checkpoint folder (default: shipped) and its tokenizer: ``tokenizer_path`` when given, else
        the folder's own ``tokenizer/`` subfolder when it has one, else the shipped one.

        ``half`` / ``compile`` are the CUDA-only speed options and ``fit_camera`` the camera fit of the module
        docstring.
        """
        from megaviewer.paths import default_model_dir, resources_dir

        folder = Path(path) if path is not None else default_model_dir()
        dev = torch.device(device) if device is not None else default_device()
        model = load_mega(folder, map_location=dev)
        tokenizer = MeshVQVAE.from_pretrained(tokenizer_folder(folder, tokenizer_path), map_location=dev)
        uncond_dir = folder / "unconditional" if (folder / "unconditional").exists() else None
        if uncond_dir is None and path is None and (resources_dir() / "pretrained").exists():
            uncond_dir = resources_dir() / "pretrained"
        uncond = load_mega(uncond_dir, map_location=dev) if uncond_dir is not None else None
        assets = BodyAssets.for_tokenizer(tokenizer)
        return cls(model, tokenizer, assets.coco_regressor, dev, name=model_name(folder), unconditional_model=uncond,
                   half=half, compile=compile, faces=assets.faces, fit_camera=fit_camera, assets=assets)

    def describe(self) -> dict:
        return {"model": self.name, "device": str(self.device),
                "conditioning": list(self.model.config.conditioning.kinds), "body": self.tokenizer.config.body,
                "tokens": self.tokenizer.num_tokens, "codes": self.tokenizer.config.num_codes,
                "half": self.half, "compiled": self.compiled, "camera_fit": self.fit_camera}

    # -------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    @_in_precision
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (..., N) -> canonical vertices (..., V, 3) on the CPU."""
        flat = tokens.reshape(-1, tokens.shape[-1]).to(self.device)
        verts = self.tokenizer.decode(flat)
        return verts.reshape(*tokens.shape[:-1], *verts.shape[-2:]).float().cpu()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The model's conditioning kinds in canonical order (``()`` for an unconditional model)."""
        return tuple(self.model.config.conditioning.kinds)

    @property
    def lifts_landmarks(self) -> bool:
        """Whether the model carries a keypoint lifter that answers for absent landmarks
        (:mod:`megaviewer.model.lifter`)."""
        return self.model.conditioning is not None and self.model.conditioning.lifter is not None

    def label(self) -> str:
        """``name (keypoints+landmarks, anny)``: which checkpoint, what it reads and which body it makes, for
        the command line's result line, the app's status bar and its Result box."""
        kinds = "+".join(self.kinds) or "unconditional"
        return f"{self.name} ({kinds}, {self.tokenizer.config.body})"

    def _conditioning(self, keypoints, image, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The model's inputs; ``landmarks`` are the detector's 3D landmarks at the COCO-17 points (17, 4)
        (:func:`megaviewer.vision.landmarks.coco_landmarks`)."""
        kinds = self.kinds
        cond: dict[str, torch.Tensor] = {}
        if "image" in kinds:
            cond["image"] = self._image_tensor(image)
        if "landmarks" in kinds:  # optional: a person without landmarks gets zeros, which the model reads as absent
            batch = max(1, int(np.asarray(keypoints).size // 51)) if keypoints is not None else (
                cond["image"].shape[0] if "image" in cond else 1)
            lm = (landmarks if landmarks is not None
                  else torch.zeros(self.model.config.conditioning.num_landmarks, 4))
            cond["landmarks"] = lm.reshape(-1, *lm.shape[-2:]).expand(batch, -1, -1).to(self.device)
        if "keypoints" in kinds:
            if keypoints is None:
                raise ValueError("this model is conditioned on 2D keypoints; pass keypoints (17, 3)")
            cond["keypoints"] = self._keypoint_tensor(keypoints)
        return cond

    def _keypoint_tensor(self, keypoints) -> torch.Tensor:
        """Crop-normalised COCO-17 keypoints as (B, 17, 3) on the device, non-finite values zeroed."""
        arr = np.asarray(keypoints, dtype=np.float32)
        if arr.size == 0 or arr.size % 51:
            raise ValueError(f"keypoints must be (17, 3) or (B, 17, 3) = (x, y, confidence) per COCO-17 "
                             f"keypoint, got shape {arr.shape}")
        kp = torch.as_tensor(arr).reshape(-1, 17, 3)
        return torch.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0).to(self.device)

    def _image_tensor(self, image) -> torch.Tensor:
        """The normalised crop(s) (B, 3, H, W) of the model's ``image_size``; a missing or misshapen crop is a
        one-line error naming what this model needs (:func:`megaviewer.vision.crops.person_crop` makes it)."""
        height, width = self.model.config.conditioning.image_size
        if image is None:
            raise ValueError(f"model {self.name} is conditioned on an image crop; pass image (3, {height}, {width}) "
                             "normalised (megaviewer.vision.crops.person_crop cuts it from the photo)")
        crop = torch.as_tensor(image, dtype=torch.float32)
        if crop.ndim not in (3, 4) or tuple(crop.shape[-3:]) != (3, height, width):
            raise ValueError(f"model {self.name} needs image crops of shape (3, {height}, {width}) or "
                             f"(B, 3, {height}, {width}), got {tuple(crop.shape)}")
        return crop.reshape(-1, 3, height, width).to(self.device)

    @torch.inference_mode()
    @_in_precision
    def recover(self, keypoints=None, image=None, *, mode: str = DEFAULTS.mode, num_samples: int | None = None,
                steps: int = DEFAULTS.steps, temperature: float = DEFAULTS.temperature,
                seed: int | None = DEFAULTS.seed, crop: CropBox | None = None, return_trace: bool = True,
                fit_camera: bool | None = None, refine: bool = DEFAULTS.refine, landmarks_3d=None,
                expected_codes: bool = DEFAULTS.expected_codes) -> RecoveryResult:
        """Recover one person from crop-normalised keypoints (17, 3) = (x, y, conf) and/or an image crop
        (3, H, W) of the model's ``image_size``, normalised (:func:`megaviewer.vision.crops.person_crop`).

        ``num_samples`` (Q) is used in stochastic mode (default ``DEFAULTS.num_samples``); deterministic mode
        returns one mesh. ``fit_camera`` (default: the engine's ``fit_camera``, on) fits every hypothesis's
        rotation and camera to the keypoints (module docstring); it needs keypoints and a model with a
        rotation/camera head. ``landmarks_3d`` (33, 3 or 4): the detector's 3D landmarks, checked and kept
        in the result. ``expected_codes`` decodes the expected code where the generation takes an argmax
        (:mod:`megaviewer.generate`; off: the paper's argmax codes).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if crop is not None and not (np.isfinite(crop.center).all() and np.isfinite(crop.side) and crop.side > 0):
            raise ValueError(f"crop box needs a finite centre and a positive side, got centre {crop.center} "
                             f"and side {crop.side}")
        if crop is not None and crop.focal is not None and not (np.isfinite(crop.focal) and crop.focal > 0):
            raise ValueError(f"crop box focal must be a positive number of pixels, got {crop.focal}")
        landmarks = coco = None
        if landmarks_3d is not None:
            from megaviewer.vision.landmarks import coco_landmarks, parse_landmarks_3d

            landmarks = torch.from_numpy(parse_landmarks_3d(landmarks_3d))
            coco = coco_landmarks(landmarks)  # what the model and the fit read
        clock = _StageClock(self.device)
        inputs = self._conditioning(keypoints, image, coco)
        cond = self.model.encode_conditioning(inputs)
        codebook = self.tokenizer.quantizer.codebook if expected_codes else None
        if mode == "deterministic":
            out = generate.deterministic(self.model, cond, return_trace=return_trace, codebook=codebook)
        else:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(seed) if seed is not None else torch.seed())
            q = DEFAULTS.num_samples if num_samples is None else num_samples
            out = generate.stochastic(self.model, cond, num_samples=q, steps=steps,
                                      temperature=temperature, generator=gen, return_trace=return_trace,
                                      codebook=codebook)
        clock.lap("generate_ms")
        fit = self.fit_camera if fit_camera is None else bool(fit_camera)
        fit_keypoints = inputs.get("keypoints") if fit else None
        if fit and fit_keypoints is None and keypoints is not None:  # an image-only model: fit to the ones passed
            fit_keypoints = self._keypoint_tensor(keypoints)
        result = self._assemble(mode, out, crop, fit_keypoints, clock, refine=refine, landmarks=coco)
        result.landmarks_3d = landmarks
        result.model = self.label()
        return result

    @torch.inference_mode()
    @_in_precision
    def unconditional(self, num_samples: int = 8, steps: int = 20, temperature: float = 1.2,
                      seed: int | None = 0, return_trace: bool = True) -> RecoveryResult:
        """Random humans from the self-supervised pre-trained model (paper App. C)."""
        model = self.unconditional_model
        if model is None:
            raise ValueError("no pre-trained (unconditional) model is available for this engine")
        gen = torch.Generator().manual_seed(int(seed) if seed is not None else torch.seed())
        clock = _StageClock(self.device)
        out = generate.unconditional(model, num_samples, steps, temperature, gen, return_trace)
        clock.lap("generate_ms")
        result = self._assemble("unconditional", out, None, None, clock)
        result.model = f"{self.name}: pre-trained (unconditional, {self.tokenizer.config.body})"
        return result

    def _assemble(self, mode: str, out: generate.GenerationResult, crop: CropBox | None,
                  fit_keypoints: torch.Tensor | None, clock: _StageClock, refine: bool = False,
                  landmarks: torch.Tensor | None = None) -> RecoveryResult:
        """Decode the tokens and place the meshes; ``fit_keypoints`` (B, 17, 3) crop coords turn the camera fit on,
        and the fit of the bodies reads ``landmarks`` (17, 4) at the COCO-17 points when given."""
        tokens = out.tokens
        q = tokens.shape[0]
        canonical = out.decode(self.tokenizer).float()
        clock.lap("decode_ms")
        fit_report = refinement = None
        network_rotation = network_cam = None
        if out.rot6d is not None:
            rotation = rot6d_to_matrix(out.rot6d.float())
            cam = out.cam.float()
            if fit_keypoints is not None:
                network_rotation, network_cam = rotation, cam
                before = canonical
                fitted = fit_to_keypoints(self.tokenizer, self.coco_regressor, tokens, canonical, rotation, cam,
                                          _keypoints_per_row(fit_keypoints.float(), q, out.num_samples),
                                          refine=refine, refine_config=self.refine_config, landmarks=landmarks,
                                          lap=clock.lap, latents=out.latents)
                fit_report, refinement = fitted.camera_fit, fitted.refinement
                canonical, rotation, cam = fitted.canonical, fitted.rotation, fitted.cam
        else:
            rotation = torch.eye(3, device=canonical.device).expand(q, 3, 3)
            cam = torch.tensor([1.0, 0.0, 0.0], device=canonical.device).expand(q, 3)
        oriented = canonical @ rotation.transpose(-1, -2)
        translation, focal = _placement(cam, crop)
        image_size = focal_source = None
        if crop is not None:
            image_size = (int(crop.image_size[0]), int(crop.image_size[1]))
            focal_source = crop.focal_source or ("given" if crop.focal is not None else "default-fov")
        before_fit = None
        if refinement is not None:
            # the camera fit's body and placement, before the body fit
            before_fit = Placement(before.cpu(), fit_report.rotation.cpu(),
                                   _placement(fit_report.cam.to(before.device), crop)[0].cpu())
        camera_vertices = oriented + translation[:, None, :]
        joints = torch.einsum("jv,qvc->qjc", self.coco_regressor, camera_vertices)
        clock.lap("place_ms")
        return RecoveryResult(
            mode=mode, tokens=tokens.cpu(), canonical_vertices=canonical.cpu(), rotation=rotation.cpu(),
            cam_weak=cam.cpu(), camera_vertices=camera_vertices.cpu(), translation=translation.cpu(),
            focal=focal, joints=joints.cpu(), faces=self.faces, trace=out.trace, timings_ms=clock.laps,
            network_rotation=network_rotation.cpu() if network_rotation is not None else None,
            network_cam=network_cam.cpu() if network_cam is not None else None, camera_fit=fit_report,
            image_size=image_size, focal_source=focal_source, refinement=refinement, before_fit=before_fit,
            latents=out.latents.float().cpu() if out.latents is not None else None,
        )


def _placement(cam: torch.Tensor, crop: CropBox | None) -> tuple[torch.Tensor, float | None]:
    """Camera-frame translations (Q, 3) of the centroids of bodies with weak-perspective cameras ``cam`` (Q, 3) in
    ``crop``, and the full-image focal (px); zeros and None without a crop box."""
    q = cam.shape[0]
    if crop is None:
        return torch.zeros(q, 3, device=cam.device), None
    from megaviewer.camera import crop_to_full

    center = torch.tensor([crop.center], dtype=torch.float32, device=cam.device).expand(q, 2)
    side = torch.full((q,), float(crop.side), device=cam.device)
    translation, focal = crop_to_full(cam, center, side, crop.image_size, crop.focal)
    return translation, float(focal[0])


def _keypoints_per_row(keypoints: torch.Tensor, rows: int, per_item: int) -> torch.Tensor:
    """The conditioning keypoints (B, 17, 3) of every output row (rows are item-major, ``per_item`` each).

    One keypoint set serves every row; otherwise there must be exactly one set per item, and anything else
    is an error rather than a hypothesis left unfitted.
    """
    if keypoints.shape[0] * per_item == rows:
        return keypoints.repeat_interleave(per_item, dim=0)
    if keypoints.shape[0] == 1:
        return keypoints.expand(rows, -1, -1)
    raise ValueError(f"cannot fit the camera of {rows} hypotheses to {keypoints.shape[0]} keypoint sets "
                     f"({per_item} hypotheses per item)")


class _StageClock:
    """Milliseconds per stage, each lap on its own clock; CUDA work is waited for so it counts where it runs."""

    def __init__(self, device: torch.device):
        self._cuda = device.type == "cuda"
        self.laps: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.laps[name] = (now - self._start) * 1000
        self._start = now
