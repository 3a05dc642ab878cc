"""The GUI's Qt-free parts: selection state, settings parsing, per-step meshes, rasteriser, frame dropping.

No display needed (``workers`` imports QtCore only, which runs headless).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from megaviewer.app.pipeline import Person, largest_person
from megaviewer.generate import Trace
from megaviewer.gui.scene import BodyScene, ResultMeshes
from megaviewer.gui.state import MEAN, REFERENCE, ViewerState
from megaviewer.gui.workers import LatestSlot
from megaviewer.render.raster import orientation, overlay_layer, thumbnail_rgba
from megaviewer.result import RecoveryResult
from megaviewer.settings import RecoverySettings
from megaviewer.vision.detector import PersonDetection

T, Q, N, V = 3, 4, 54, 1229


def fake_result(mode: str = "stochastic", q: int = Q) -> RecoveryResult:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 512, (q, N), generator=g)
    visible = torch.stack([torch.arange(N)[None].expand(q, N) < n for n in (7, 27, 54)])
    revealed = visible.clone()
    revealed[1:] &= ~visible[:-1]
    trace = Trace(tokens[None].expand(T, q, N).clone(), visible, revealed, (1.0, 0.5, 0.0))
    verts = torch.randn(q, V, 3, generator=g) * 0.1
    return RecoveryResult(mode=mode, tokens=tokens, canonical_vertices=verts, rotation=torch.eye(3).expand(q, 3, 3),
                          cam_weak=torch.zeros(q, 3), camera_vertices=verts + torch.tensor([0, 0, 3.0]),
                          translation=torch.tensor([0, 0, 3.0]).expand(q, 3), focal=1000.0,
                          joints=torch.zeros(q, 17, 3), faces=torch.zeros(1, 3, dtype=torch.long), trace=trace)


def _person(size: float) -> Person:
    """A detected person whose keypoints span a ``size`` px square."""
    kp = np.ones((17, 3))
    kp[:, :2] = np.linspace(0.0, size, 17)[:, None]
    return Person(PersonDetection.from_keypoints(kp, (100, 100)))


def test_state_indices_and_notifications():
    state, seen = ViewerState(), []
    state.subscribe(seen.append)
    state.set_image(np.zeros((4, 4, 3), np.uint8))
    people = [_person(10.0), _person(50.0)]
    state.set_people(people)
    assert state.person == 1 == largest_person(people)  # the biggest box is pre-selected
    state.set_result(fake_result(), reference=fake_result("deterministic", 1))
    assert (state.sample, state.step, state.num_steps, state.has_spread) == (0, None, T, True)
    state.set_step(1)
    state.select_sample(2)
    assert (state.sample, state.step) == (2, 1)  # scrubber and browser are independent indices
    state.select_sample(MEAN)
    assert state.step is None  # the mean has no trace to scrub
    state.set_step(0)
    assert (state.sample, state.step) == (0, 0)  # scrubbing goes back to a real hypothesis
    state.select_sample(REFERENCE)
    assert state.sample == REFERENCE
    state.set_step(99)
    assert state.step is None
    state.set_result(fake_result(q=2), keep_indices=True)
    assert state.sample == 0  # the reference is gone with the new result
    with pytest.raises(ValueError):
        state.set_view_flag("nope", True)
    assert {"image", "people", "result", "sample", "step"} <= set().union(*seen)


def test_settings_from_dict_is_tolerant():
    good = RecoverySettings(mode="stochastic", num_samples=6, steps=3, temperature=1.5, seed=7, random_seed=True)
    assert RecoverySettings.from_dict(good.to_dict()) == good
    odd = RecoverySettings.from_dict({"mode": "bogus", "num_samples": "12", "steps": "x", "random_seed": "true",
                                      "unknown": 1})
    assert (odd.mode, odd.num_samples, odd.steps, odd.random_seed) == ("deterministic", 12, 5, True)
    assert odd.fit_camera is True  # the camera fit is on unless switched off
    assert RecoverySettings.from_dict({"fit_camera": "false"}).fit_camera is False
    off = RecoverySettings(fit_camera=False, expected_codes=False)
    assert RecoverySettings.from_dict(off.to_dict()) == off
    assert RecoverySettings.from_dict({"expected_codes": "false"}).expected_codes is False


def test_result_meshes_decode_fig3_tokens_lazily_and_cache():
    calls = []

    def decode(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.clone())
        return tokens.float().mean(-1, keepdim=True)[..., None].expand(*tokens.shape[:-1], V, 3)

    result = fake_result()
    meshes = ResultMeshes(result, decode)
    first = meshes.canonical(1, 0)
    assert len(calls) == 1
    visible = result.trace.visible[0, 1]
    assert torch.equal(calls[0][0][visible], result.trace.tokens[0, 1][visible])
    assert (calls[0][0][~visible] == 0).all()  # masked tokens decode as codebook entry 0 (paper Fig. 3)
    assert meshes.canonical(1, 0) is first and len(calls) == 1  # cached
    meshes.prefetch(1)
    assert len(calls) == 2 and calls[1].shape == (T - 1, N)  # only the missing steps, in one batch
    assert torch.equal(meshes.canonical(0, None), result.canonical_vertices[0])
    assert np.allclose(meshes.camera(MEAN), result.mean_camera.numpy())
    assert meshes.display(0).shape == (V, 3)


def test_body_scene_token_regions(body_assets):
    from megaviewer.tokenizer.model import MeshVQVAE

    tokenizer = MeshVQVAE.from_pretrained()
    centres, n = tokenizer.token_vertices, tokenizer.num_tokens
    scene = BodyScene(body_assets, centres)
    assert len(centres) == n and scene.vertex_token.shape == (V,)
    assert set(np.unique(scene.vertex_token)) == set(range(n))  # every token owns a region
    assert (scene.vertex_token[centres] == np.arange(n)).all()  # a centre belongs to its own token
    visible = np.zeros(n, bool)
    visible[:10] = True
    revealed = np.zeros(n, bool)
    revealed[5:10] = True
    rgb = scene.token_colours(visible, revealed)
    assert rgb.shape == (body_assets.num_display_vertices, 3) and len(np.unique(rgb, axis=0)) == 3


def test_rasteriser_draws_front_faces(body_assets):
    verts = body_assets.template.numpy()
    faces = body_assets.faces.numpy()
    assert orientation(verts, faces) == 1
    thumb = thumbnail_rgba(verts, faces, (72, 112), np.array([200, 200, 200], np.uint8))
    assert thumb[..., 3].mean() > 20 and thumb[..., :3].std() > 5  # a shaded silhouette
    camera = verts * np.array([1.0, -1.0, -1.0]) + np.array([0.0, 0.0, 3.0])
    over = overlay_layer([camera], faces, 500.0, (320, 320), np.array([200, 200, 200], np.uint8))
    ys, xs = np.nonzero(over[..., 3])
    assert abs(xs.mean() - 160) < 20 and ys.min() < 160 < ys.max()  # centred on the principal point


def test_latest_slot_drops_instead_of_queueing():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4 and slot.dropped == 4 and slot.take(0) is None
    got = []
    consumer = threading.Thread(target=lambda: got.append(slot.take(timeout=2)))
    consumer.start()
    time.sleep(0.05)
    slot.put("late")
    consumer.join()
    assert got == ["late"]
