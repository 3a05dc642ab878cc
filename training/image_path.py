"""End-to-end proof of MEGA's image conditioning at small scale: rendered crops -> timm CNN -> tokens.

Why this exists: the shipped model is keypoint-conditioned (no image data set can be used here), yet the
paper's model reads images. This module exercises that whole path on synthetic data so it is known to
train: posed synthetic meshes are rendered as grey-shaded crops (pyvista off-screen, EGL, no display
needed), and a ``Mega`` with ``ConditioningConfig(kinds=("image",), image_backbone="resnet18")`` (timm,
random init, nothing downloaded) is trained on them with the same three losses as conditioned training.

Rendering: every mesh gets a random camera and crop from :func:`training.data.observations.synthesize`;
the crop is rendered with an orthographic camera that applies exactly the fitted weak-perspective camera
``[s, tx, ty]`` (crop coords: x right, y down, [-1, 1]), so image, rotation target and 2D targets agree
(the 2D targets are the weak-perspective projections of the GT joints, not the perspective ones). The data
set is rendered once and cached as safetensors next to the run (tied to the tokenizer's fingerprint).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from megaviewer.camera import weak_perspective_project
from megaviewer.io.atomic import atomic_write_text
from megaviewer.io.checkpoint import load_tensors, save_tensors
from megaviewer.masking import sample_visible_mask
from megaviewer.model import Mega
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.observations import ObservationConfig, synthesize
from training.data.pool import MeshPool, tokenizer_fingerprint
from training.loop import LoopConfig, train
from training.mega_losses import completed_tokens, hmr_losses, masked_token_loss, rotation_loss
from training.mega_pretrain import build_mega, load_tokenizer, model_device

DATA_KEYS = ("images", "tokens", "rot_cam", "cam", "joints2d", "joints2d_conf")


@dataclass
class ImagePathConfig:
    out_dir: str = "runs/image_path"
    steps: int = 300
    num_images: int = 256
    seed: int = 0
    batch_size: int = 16
    image_size: int = 64
    backbone: str = "resnet18"
    preset: str = "cpu_small"
    lr: float = 1e-3
    head_dropout: float = 0.1
    warmup_steps: int = 20
    masking: str = "cosine"
    tokenizer: str | None = None
    progress: bool = True


# ---------------------------------------------------------------------------------------------- rendering
def render_crops(vertices: torch.Tensor, faces: torch.Tensor, size: int) -> torch.Tensor:
    """Grey-shaded renders (N, size, size) uint8 of meshes already in crop coordinates.

    ``vertices`` (N, V, 3): x, y in [-1, 1] crop coords (x right, y down), z = depth (larger = farther).
    One off-screen plotter is reused for all meshes (only the points change), with an orthographic camera
    on -z looking along +z with image-up = -y, showing exactly [-1, 1]².
    """
    import pyvista as pv

    faces_np = faces.cpu().numpy().astype(np.int64)
    cells = np.hstack([np.full((faces_np.shape[0], 1), 3, dtype=np.int64), faces_np]).ravel()
    mesh = pv.PolyData(vertices[0].cpu().numpy().astype(np.float64), cells)
    plotter = pv.Plotter(off_screen=True, window_size=(size, size))
    try:
        plotter.set_background("black")
        plotter.add_mesh(mesh, color="white", smooth_shading=False, lighting=True)
        plotter.enable_parallel_projection()
        plotter.camera_position = [(0.0, 0.0, -10.0), (0.0, 0.0, 0.0), (0.0, -1.0, 0.0)]
        plotter.camera.parallel_scale = 1.0
        plotter.camera.clipping_range = (1.0, 30.0)
        out = np.empty((vertices.shape[0], size, size), dtype=np.uint8)
        for i in range(vertices.shape[0]):
            mesh.points = vertices[i].cpu().numpy().astype(np.float64)
            plotter.render()
            rgb = plotter.screenshot(return_img=True)
            out[i] = rgb[..., :3].astype(np.float32).mean(axis=-1).round().astype(np.uint8)
    finally:
        plotter.close()
    return torch.from_numpy(out)


def to_crop_coords(points: torch.Tensor, rot_cam: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Canonical points (B, P, 3) -> crop coords + scaled depth under rotation and weak-perspective cam."""
    rotated = points @ rot_cam.transpose(-1, -2)
    xy = weak_perspective_project(rotated, cam)
    return torch.cat([xy, cam[:, None, :1] * rotated[..., 2:]], dim=-1)


def build_image_dataset(tokenizer: MeshVQVAE, num_images: int, seed: int, image_size: int = 64,
                        meshes=None, chunk: int = 128) -> dict[str, torch.Tensor]:
    """Sample meshes, tokenise them, draw cameras/crops and render them (deterministic given ``seed``)."""
    if meshes is None:
        from training.data.meshes import SyntheticMeshes

        meshes = SyntheticMeshes()
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in DATA_KEYS}
    obs_cfg = ObservationConfig()
    with torch.no_grad():
        for start in range(0, num_images, chunk):
            batch = meshes.sample(min(chunk, num_images - start), generator)
            vertices = batch.vertices.float()
            vertices = vertices - vertices.mean(dim=1, keepdim=True)
            joints = meshes.body.joints(vertices).float()
            pool = MeshPool(tokenizer.encode(vertices).long(), joints, batch.params.global_orient.float())
            obs = synthesize(pool, obs_cfg, generator)
            joints2d = weak_perspective_project(joints @ obs.rot_cam.transpose(-1, -2), obs.cam_weak)
            parts["images"].append(render_crops(to_crop_coords(vertices, obs.rot_cam, obs.cam_weak),
                                                meshes.body.faces, image_size))
            parts["tokens"].append(pool.tokens)
            parts["rot_cam"].append(obs.rot_cam)
            parts["cam"].append(obs.cam_weak)
            parts["joints2d"].append(joints2d)
            parts["joints2d_conf"].append((joints2d.abs() <= 1.0).all(dim=-1).float())
    return {k: torch.cat(v) for k, v in parts.items()}


def load_or_build_dataset(path: Path, tokenizer: MeshVQVAE, num_images: int, seed: int, image_size: int,
                          meshes=None) -> dict[str, torch.Tensor]:
    """The cached data set at ``path`` if it was made with this tokenizer, else render and cache it."""
    meta_path = path.with_name(path.name + ".json")
    fingerprint = tokenizer_fingerprint(tokenizer)
    wanted = {"num_images": num_images, "seed": seed, "image_size": image_size, "tokenizer": fingerprint}
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == wanted:
        return load_tensors(path)
    data = build_image_dataset(tokenizer, num_images, seed, image_size, meshes)
    save_tensors(path, data)
    atomic_write_text(meta_path, json.dumps(wanted, indent=2))
    return data


# ---------------------------------------------------------------------------------------------- training
def images_to_input(images: torch.Tensor, model: Mega) -> torch.Tensor:
    """uint8 (B, H, W) grey crops -> (B, 3, H, W) float normalised as the backbone expects."""
    conditioner = model.conditioning.conditioners["image"]
    x = images.float().div(255.0)[:, None].expand(-1, 3, -1, -1)
    mean = torch.tensor(conditioner.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(conditioner.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class ImagePathTask:
    """:class:`training.loop.TrainTask` of the image-conditioned model on a fixed rendered data set."""

    def __init__(self, model: Mega, data: dict[str, torch.Tensor], tokenizer: MeshVQVAE,
                 regressor: torch.Tensor, batch_size: int, masking: str = "cosine"):
        self.model = model
        self.data = data
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.regressor = regressor.float()
        self.batch_size = batch_size
        self.masking = masking

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        count = self.data["tokens"].shape[0]
        idx = torch.randint(0, count, (self.batch_size,), generator=generator)
        visible = sample_visible_mask(self.batch_size, self.model.config.seq_len, self.masking, generator)
        device = model_device(model)
        batch = {k: v[idx].to(device) for k, v in self.data.items()}
        visible = visible.to(device)
        self.tokenizer.to(device)
        out = model(batch["tokens"], visible, {"image": images_to_input(batch["images"], self.model).to(device)})
        return hmr_losses(out.logits, out.rot6d, out.cam, batch["tokens"], visible, batch["rot_cam"],
                          batch["joints2d"], batch["joints2d_conf"], self.tokenizer,
                          self.regressor.to(device))


@torch.no_grad()
def evaluate_images(model: Mega, data: dict[str, torch.Tensor], batch: int = 64) -> dict[str, float]:
    """Deterministic-mode figures (all tokens masked, one pass): token CE, accuracy, rotation MSE."""
    was_training = model.training
    model.eval()
    ce = acc = rot = 0.0
    count = data["tokens"].shape[0]
    for start in range(0, count, batch):
        tokens = data["tokens"][start:start + batch]
        visible = torch.zeros_like(tokens, dtype=torch.bool)
        out = model(tokens, visible, {"image": images_to_input(data["images"][start:start + batch], model)})
        tok = masked_token_loss(out.logits, tokens, visible)
        n = tokens.shape[0]
        ce += float(tok.loss) * n
        acc += float((completed_tokens(tokens, visible, out.logits) == tokens).float().mean()) * n
        rot += float(rotation_loss(out.rot6d, data["rot_cam"][start:start + batch])) * n
    model.train(was_training)
    return {"token_ce": ce / count, "token_acc": acc / count, "rot_mse": rot / count}


def blind_baselines(data: dict[str, torch.Tensor]) -> dict[str, float]:
    """The best figures a model that ignores the image can reach on ``data`` (its own training set).

    Token CE: entropy of each position's empirical token distribution; accuracy: always the position's
    most frequent token; rotation MSE: always the mean matrix (the best constant, rotation or not). A
    final figure below these shows the image is actually used.
    """
    tokens, rot = data["tokens"], data["rot_cam"].float()
    count = tokens.shape[0]
    ce = 0.0
    for column in tokens.T:
        probs = torch.bincount(column).float() / count
        probs = probs[probs > 0]
        ce -= float((probs * probs.log()).sum())
    mode = tokens.mode(dim=0).values
    return {"token_ce": ce / tokens.shape[1], "token_acc": float((tokens == mode[None]).float().mean()),
            "rot_mse": float(((rot - rot.mean(dim=0)) ** 2).mean())}


def train_image_path(out_dir: str | Path, steps: int = 300, num_images: int = 256, seed: int = 0,
                     tokenizer: MeshVQVAE | str | None = None, preset: str = "cpu_small",
                     image_size: int = 64, batch_size: int = 16, lr: float = 1e-3, backbone: str = "resnet18",
                     head_dropout: float = 0.1, meshes=None, progress: bool = True) -> dict[str, Any]:
    """Render (or reuse) ``num_images`` crops, train ``steps`` steps, return initial vs final figures.

    Figures are measured in deterministic mode on the training images (this proves the path learns; it
    is not a generalisation benchmark); ``blind`` holds what an image-blind model reaches on them.
    ``head_dropout`` lowers the original's 0.5 in the rotation/camera head, which stalls a run this short.
    """
    cfg = ImagePathConfig(out_dir=str(out_dir), steps=steps, num_images=num_images, seed=seed,
                          batch_size=batch_size, image_size=image_size, backbone=backbone, preset=preset,
                          lr=lr, head_dropout=head_dropout, progress=progress,
                          tokenizer=None if isinstance(tokenizer, MeshVQVAE) else tokenizer)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if isinstance(tokenizer, MeshVQVAE) else load_tokenizer(cfg.tokenizer)
    if meshes is None:
        from training.data.meshes import SyntheticMeshes

        meshes = SyntheticMeshes()
    started = time.perf_counter()
    data = load_or_build_dataset(out / f"images-{num_images}x{image_size}-seed{seed}.safetensors", tok,
                                 num_images, seed, image_size, meshes)
    render_s = time.perf_counter() - started
    torch.manual_seed(seed)
    model = build_mega(preset, tok, kinds=("image",), head_dropout=head_dropout,
                       conditioning={"image_backbone": backbone, "image_size": (image_size, image_size)})
    initial = evaluate_images(model, data)
    task = ImagePathTask(model, data, tok, meshes.body.coco_regressor.float(), batch_size, cfg.masking)
    loop = LoopConfig(out_dir=str(out), total_steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.05,
                      betas=(0.9, 0.95), warmup_steps=min(cfg.warmup_steps, max(0, steps // 5)),
                      ckpt_every=max(1, steps), log_every=max(1, min(20, steps)), seed=seed, progress=progress)
    started = time.perf_counter()
    final = train(task, loop)
    final_metrics = evaluate_images(model, data)
    result = {"initial": initial, "final": final_metrics, "blind": blind_baselines(data),
              "steps": steps, "num_images": num_images, "image_size": image_size, "backbone": backbone,
              "preset": preset, "render_s": render_s, "train_s": time.perf_counter() - started,
              "final_dir": str(final), "config": asdict(cfg)}
    atomic_write_text(out / "image_path_metrics.json", json.dumps(result, indent=2))
    return result
