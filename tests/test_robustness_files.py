"""Untrusted model files and lost work: pickles are refused before anything is unpickled, malformed checkpoints
are named, and every file write is atomic (a crash mid-write leaves the previous file and no temp file).

Every model-file case goes through the public loaders (``load_mega``, ``MeshVQVAE.from_pretrained``,
``Engine.from_pretrained``) and, for the MEGA side, through ``megaviewer infer --model`` (one line, exit 1).
The pickles used are real exploits: unpickling one creates a marker file, which is checked to happen under
``torch.load(weights_only=False)`` (so the test would notice a harmless pickle) and never under our loaders.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from megaviewer.cli import main
from megaviewer.engine import Engine
from megaviewer.io import atomic as atomic_mod
from megaviewer.io import export as export_mod
from megaviewer.io.atomic import atomic_write_bytes, atomic_write_text
from megaviewer.io.checkpoint import CheckpointError, load_tensors, save_checkpoint, save_tensors
from megaviewer.io.export import ExportError, export_mesh, export_npz
from megaviewer.model.mega import Mega, load_mega, save_mega
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from tests._engines import tiny_engine


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny tokenizer and a matching keypoint-conditioned ``test_tiny`` MEGA, saved once."""
    from training.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    tokenizer = build_tokenizer(TokenizerConfig(channels=[4, 4, 4]))
    tokenizer.save(root / "tokenizer")
    model = Mega.from_preset("test_tiny", vocab=int(tokenizer.config.num_codes), seq_len=int(tokenizer.num_tokens))
    save_mega(root / "mega", model)
    return {"tokenizer": root / "tokenizer", "mega": root / "mega", "root": root}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class _Exploit:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code an attacker would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_torch_file(path: Path, marker: Path) -> Path:
    torch.save({"model": {"weight": torch.zeros(2)}, "payload": _Exploit(marker)}, path)  # zip + pickle
    return path


def _evil_raw_pickle(path: Path, marker: Path, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps({"payload": _Exploit(marker)}, protocol=protocol))
    return path


def test_the_crafted_pickles_really_are_exploits(tmp_path):
    """Positive control: loading them the unsafe way does create the marker, so its absence below means
    something."""
    marker = tmp_path / "pwned"
    torch.load(_evil_torch_file(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()
    marker.unlink()
    for protocol in (0, 4):
        pickle.loads(_evil_raw_pickle(tmp_path / f"evil{protocol}.pkl", marker, protocol).read_bytes())
        assert marker.exists()
        marker.unlink()


# ------------------------------------------------------------------------------------ pickles are refused
def _cli_model(model: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    image = tmp_path / "photo.png"
    if not image.exists():
        import cv2

        cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    code = main(["infer", str(image), "--out", str(tmp_path / "out"), "--model", str(model), "--quiet",
                 "--device", "cpu"])
    out = capsys.readouterr()
    assert out.out == ""
    return code, out.err


def _pickle_places(tmp: Path, marker: Path, ck: dict[str, Path]) -> dict[str, tuple[Callable[[], object], Path]]:
    """Loader calls that each meet a pickle: (call, the path the message must name)."""
    pt = _evil_torch_file(tmp / "model.pt", marker)
    mega_zip = _copy(ck["mega"], tmp / "mega_zip")
    _evil_torch_file(mega_zip / "model.safetensors", marker)  # a .pt renamed into a real-looking folder
    mega_raw = _copy(ck["mega"], tmp / "mega_raw")
    _evil_raw_pickle(mega_raw / "model.safetensors", marker)
    tok_zip = _copy(ck["tokenizer"], tmp / "tok_zip")
    _evil_torch_file(tok_zip / "model.safetensors", marker)
    return {
        "load_mega(file)": (lambda: load_mega(pt), pt),
        "load_mega(folder, zip pickle)": (lambda: load_mega(mega_zip), mega_zip / "model.safetensors"),
        "load_mega(folder, raw pickle)": (lambda: load_mega(mega_raw), mega_raw / "model.safetensors"),
        "MeshVQVAE.from_pretrained(file)": (lambda: MeshVQVAE.from_pretrained(pt), pt),
        "MeshVQVAE.from_pretrained(folder)": (lambda: MeshVQVAE.from_pretrained(tok_zip),
                                              tok_zip / "model.safetensors"),
        "Engine(path=file)": (lambda: Engine.from_pretrained(pt, "cpu", ck["tokenizer"]), pt),
        "Engine(path=folder)": (lambda: Engine.from_pretrained(mega_zip, "cpu", ck["tokenizer"]),
                                mega_zip / "model.safetensors"),
        "Engine(tokenizer_path=folder)": (lambda: Engine.from_pretrained(ck["mega"], "cpu", tok_zip),
                                          tok_zip / "model.safetensors"),
        "load_tensors(file)": (lambda: load_tensors(pt), pt),
    }


PICKLE_PLACES = ["load_mega(file)", "load_mega(folder, zip pickle)", "load_mega(folder, raw pickle)",
                 "MeshVQVAE.from_pretrained(file)", "MeshVQVAE.from_pretrained(folder)", "Engine(path=file)",
                 "Engine(path=folder)", "Engine(tokenizer_path=folder)", "load_tensors(file)"]


@pytest.mark.parametrize("place", PICKLE_PLACES)
def test_pickles_are_refused_before_unpickling(tmp_path, checkpoints, place):
    marker = tmp_path / "pwned"
    call, named = _pickle_places(tmp_path, marker, checkpoints)[place]
    with pytest.raises(CheckpointError, match="pickle") as info:
        call()
    assert str(named) in str(info.value) and "never unpickles" in str(info.value)
    assert not marker.exists(), "the pickle was executed"


@pytest.mark.parametrize("kind", ["pt-file", "folder"])
def test_cli_model_option_refuses_a_pickle_in_one_line(tmp_path, checkpoints, capsys, kind):
    marker = tmp_path / "pwned"
    if kind == "pt-file":
        model = _evil_torch_file(tmp_path / "model.pt", marker)
    else:
        model = _copy(checkpoints["mega"], tmp_path / "downloaded")
        _evil_torch_file(model / "model.safetensors", marker)
    code, err = _cli_model(model, tmp_path, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"megaviewer infer: cannot load {model}") and "pickle" in err
    assert not marker.exists()


def test_protocol_0_pickle_is_refused_as_not_safetensors_without_unpickling(tmp_path, checkpoints):
    """Text pickles (protocol 0) have no magic bytes to recognise; safetensors' parser refuses them, and
    nothing is unpickled either."""
    marker = tmp_path / "pwned"
    folder = _copy(checkpoints["mega"], tmp_path / "mega")
    _evil_raw_pickle(folder / "model.safetensors", marker, protocol=0)
    with pytest.raises(CheckpointError, match="is not a valid safetensors file"):
        load_mega(folder)
    assert not marker.exists()


@pytest.mark.parametrize("header_bytes", [640, 896, 1152, 1408])
def test_safetensors_whose_header_length_reads_like_pickle_magic_load(tmp_path, header_bytes):
    """A safetensors file starts with its header's length; 640 bytes is b"\\x80\\x02..." like a protocol-2 pickle.
    Such files (a body file of a 6,890-vertex SMPL model had one) are safetensors and must load."""
    from megaviewer.io.checkpoint import load_tensors, save_tensors

    tensors = {"a": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / "t.safetensors"
    for pad in range(2000):
        save_tensors(path, tensors, metadata={"note": "x" * pad})
        if int.from_bytes(path.read_bytes()[:8], "little") == header_bytes:
            break
    assert path.read_bytes()[:2] == bytes([header_bytes & 0xFF, header_bytes >> 8])
    assert torch.equal(load_tensors(path)["a"], tensors["a"])


# ----------------------------------------------------------------------------------- malformed checkpoints
def _mutate_tensors(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_tensors(folder / "model.safetensors")
    edit(tensors)
    save_tensors(folder / "model.safetensors", tensors)


def _first_matrix(tensors: dict[str, torch.Tensor], prefix: str = "") -> str:
    return next(k for k, v in sorted(tensors.items()) if v.ndim == 2 and k.startswith(prefix))


def _wrong_shape(folder: Path, prefix: str = "") -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    tensors = load_tensors(folder / "model.safetensors")
    name = _first_matrix(tensors, prefix)
    good = tuple(tensors[name].shape)
    bad = (good[0] + 3, good[1])

    def edit(t):
        t[name] = torch.zeros(bad)

    _mutate_tensors(folder, edit)
    return name, bad, good


def _write_config(folder: Path, text: str | bytes | None) -> None:
    path = folder / "config.json"
    if text is None:
        path.unlink()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def _patched_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _bad_mega(case: str, tmp: Path, ck: dict[str, Path]) -> tuple[Path, str]:
    """A broken MEGA checkpoint ``case`` -> (path to pass, regex the error must match)."""
    if case == "tokenizer-given-as-model":
        return ck["tokenizer"], r"holds a 'mesh_vqvae' checkpoint, expected 'mega'"
    if case == "missing-folder":
        return tmp / "nowhere", r"nowhere has no config\.json"
    folder = _copy(ck["mega"], tmp / case)
    if case == "wrong-shape":
        name, bad, good = _wrong_shape(folder)
        return folder, rf"{re.escape(name)}: checkpoint {re.escape(str(bad))} vs model {re.escape(str(good))}"
    if case == "missing-tensor":
        _mutate_tensors(folder, lambda t: t.pop(_first_matrix(t)))
        return folder, r"missing tensors: "
    if case == "unexpected-tensor":
        _mutate_tensors(folder, lambda t: t.update({"sneaky.extra": torch.zeros(3)}))
        return folder, r"unexpected tensors: sneaky\.extra"
    if case == "config-not-json":
        _write_config(folder, "{ this is not json")
        return folder, r"config\.json is not valid JSON"
    if case == "config-binary":
        _write_config(folder, b"\x89\xff\x00\x13")
        return folder, r"config\.json is not valid JSON"
    if case == "config-is-a-list":
        _write_config(folder, "[1, 2, 3]")
        return folder, r"config\.json must hold a JSON object"
    if case == "config-missing":
        _write_config(folder, None)
        return folder, r"has no config\.json; expected a megaviewer checkpoint folder"
    if case == "config-no-kind":
        _write_config(folder, "{}")
        return folder, r"holds a None checkpoint, expected 'mega'"
    if case == "config-wrong-types":
        _patched_config(folder, dim="big")
        return folder, r"config\.json does not describe a valid MEGA model"
    if case == "config-unknown-key":
        _patched_config(folder, layers=12)
        return folder, r"does not describe a valid MEGA model: unknown MegaConfig keys: \['layers'\]"
    if case == "config-bigger-model":
        _patched_config(folder, dim=64)
        return folder, r"does not match the model built from its config: .*checkpoint \(\d+, 32\) vs model \(\d+, 64\)"
    weights = folder / "model.safetensors"
    if case == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return folder, r"model\.safetensors is not a valid safetensors file"
    if case == "empty-weights":
        weights.write_bytes(b"")
        return folder, r"model\.safetensors is not a valid safetensors file"
    if case == "huge-header-length":
        weights.write_bytes((2**62).to_bytes(8, "little") + b"{}")
        return folder, r"model\.safetensors is not a valid safetensors file"
    if case == "missing-weights":
        weights.unlink()
        return folder, r"checkpoint file not found: .*model\.safetensors"
    if case == "weights-is-a-folder-file":
        return weights, r"model\.safetensors is a file; pass the checkpoint folder"
    raise AssertionError(case)


MEGA_CASES = ["tokenizer-given-as-model", "missing-folder", "wrong-shape", "missing-tensor", "unexpected-tensor",
              "config-not-json", "config-binary", "config-is-a-list", "config-missing", "config-no-kind",
              "config-wrong-types", "config-unknown-key", "config-bigger-model", "truncated-weights",
              "empty-weights", "huge-header-length", "missing-weights", "weights-is-a-folder-file"]


@pytest.mark.parametrize("case", MEGA_CASES)
def test_broken_mega_checkpoint_is_named(tmp_path, checkpoints, capsys, case):
    path, message = _bad_mega(case, tmp_path, checkpoints)
    for load in (lambda: load_mega(path), lambda: Engine.from_pretrained(path, "cpu", checkpoints["tokenizer"])):
        with pytest.raises((CheckpointError, FileNotFoundError), match=message):
            load()
    code, err = _cli_model(path, tmp_path, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"megaviewer infer: cannot load {path}: ") and re.search(message, err), err


def _bad_tokenizer(case: str, tmp: Path, ck: dict[str, Path]) -> tuple[Path, str]:
    if case == "mega-given-as-tokenizer":
        return ck["mega"], r"holds a 'mega' checkpoint, expected 'mesh_vqvae'"
    folder = _copy(ck["tokenizer"], tmp / case)
    if case == "wrong-shape":
        name, bad, good = _wrong_shape(folder, prefix="quantizer")
        return folder, rf"{re.escape(name)}: checkpoint {re.escape(str(bad))} vs model {re.escape(str(good))}"
    if case == "config-wrong-types":
        _patched_config(folder, latent_dim="nine")
        return folder, r"does not hold a valid tokenizer"
    if case == "config-other-levels":
        _patched_config(folder, channels=[4, 4])
        return folder, r"does not hold a valid tokenizer: need one channel width per level"
    if case == "neighbour-table-missing":
        _mutate_tensors(folder, lambda t: t.pop("encoder.0.index"))
        return folder, r"lacks neighbour table 'encoder\.0\.index'"
    if case == "truncated-weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
        return folder, r"is not a valid safetensors file"
    raise AssertionError(case)


TOKENIZER_CASES = ["mega-given-as-tokenizer", "wrong-shape", "config-wrong-types", "config-other-levels",
                   "neighbour-table-missing", "truncated-weights"]


@pytest.mark.parametrize("case", TOKENIZER_CASES)
def test_broken_tokenizer_checkpoint_is_named(tmp_path, checkpoints, case):
    path, message = _bad_tokenizer(case, tmp_path, checkpoints)
    with pytest.raises(CheckpointError, match=message):
        MeshVQVAE.from_pretrained(path)
    with pytest.raises(CheckpointError, match=message):
        Engine.from_pretrained(checkpoints["mega"], "cpu", tokenizer_path=path)


def test_good_checkpoints_load_and_a_mismatched_pair_is_named(tmp_path, checkpoints):
    engine = Engine.from_pretrained(checkpoints["mega"], "cpu", checkpoints["tokenizer"])  # the control case
    assert engine.recover(np.zeros((17, 3), np.float32), return_trace=False).num_samples == 1
    other = Mega.from_preset("test_tiny", vocab=256, seq_len=54)
    save_mega(tmp_path / "vocab256", other)
    with pytest.raises(ValueError, match="model expects 54 tokens over 256 codes but the tokenizer has 54 over 512"):
        Engine.from_pretrained(tmp_path / "vocab256", "cpu", checkpoints["tokenizer"])


def test_half_precision_weights_load_as_the_model_the_evaluation_scored(tmp_path, checkpoints):
    """The shipped default is stored as float16: it loads as float32, equal to the float32 model rounded the way
    the recipe's evaluation rounds it (training.run_recipe.as_shipped), and the engine runs it."""
    from safetensors.torch import load_file

    from training.run_recipe import as_shipped, install_model

    install_model(checkpoints["mega"], tmp_path / "shipped", {"deterministic": {"pa_mpjpe": 1.0}}, half=True)
    stored = load_file(str(tmp_path / "shipped" / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert json.loads((tmp_path / "shipped" / "metrics.json").read_text())["deterministic"]["pa_mpjpe"] == 1.0
    full = load_mega(checkpoints["mega"]).state_dict()
    shipped = load_mega(tmp_path / "shipped").state_dict()
    rounded = as_shipped(load_mega(checkpoints["mega"])).state_dict()
    assert all(v.dtype != torch.float16 for v in shipped.values())
    assert all(torch.equal(shipped[k], rounded[k]) for k in full)
    assert any(not torch.equal(shipped[k], full[k]) for k in full)  # the rounding happened
    engine = Engine.from_pretrained(tmp_path / "shipped", "cpu", checkpoints["tokenizer"])
    assert engine.recover(np.zeros((17, 3), np.float32), return_trace=False).num_samples == 1


# -------------------------------------------------------------------------------------- atomic writes
@pytest.fixture(scope="module")
def mesh(body_assets):
    return body_assets.template.numpy().astype(np.float32), body_assets.faces.numpy()


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", ["obj", "glb"])
def test_mesh_export_crash_mid_write_keeps_the_previous_file(tmp_path, mesh, monkeypatch, suffix):
    """(.ply is in test_export.py.) The writer dies after writing half a file."""
    target = tmp_path / f"body.{suffix}"
    export_mesh(target, *mesh)
    previous = target.read_bytes()

    def dies_halfway(path, *args):
        Path(path).write_bytes(previous[: len(previous) // 2])
        raise RuntimeError("power cut")

    monkeypatch.setattr(export_mod, f"_write_{suffix}", dies_halfway)
    with pytest.raises(RuntimeError, match="power cut"):
        export_mesh(target, mesh[0] * 2.0, mesh[1])
    assert target.read_bytes() == previous and _only(tmp_path) == [target.name]


def test_npz_export_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    result = tiny_engine().recover(np.zeros((17, 3), np.float32), return_trace=False)
    target = export_npz(tmp_path / "person0.npz", result)
    previous = target.read_bytes()

    def dies_halfway(handle, **arrays):
        handle.write(previous[: len(previous) // 2])
        raise MemoryError("out of memory while compressing")

    monkeypatch.setattr(export_mod.np, "savez_compressed", dies_halfway)
    with pytest.raises(MemoryError):
        export_npz(target, result, person_index=1)
    assert target.read_bytes() == previous and _only(tmp_path) == ["person0.npz"]
    monkeypatch.undo()
    assert int(np.load(target)["person_index"]) == 0  # still the old, complete file


def test_interrupt_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """Ctrl-C (a BaseException) between writing the temp file and renaming it."""
    target = tmp_path / "notes.json"
    atomic_write_text(target, '{"version": 1}')

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_mod.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, '{"version": 2}')
    assert target.read_text() == '{"version": 1}' and _only(tmp_path) == ["notes.json"]


def test_checkpoint_save_crash_mid_weights_keeps_the_previous_checkpoint(tmp_path, checkpoints, monkeypatch):
    import safetensors.torch

    folder = _copy(checkpoints["mega"], tmp_path / "mega")
    before = (folder / "model.safetensors").read_bytes()
    model = load_mega(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real_save = safetensors.torch.save_file

    def dies_halfway(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(os.path.getsize(filename) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(folder, model, model.config.to_dict())
    assert (folder / "model.safetensors").read_bytes() == before
    assert _only(folder) == ["config.json", "model.safetensors"]  # no temp file
    monkeypatch.undo()
    reloaded = load_mega(folder)  # the previous checkpoint still loads, with the previous weights
    original = load_tensors(checkpoints["mega"] / "model.safetensors")
    assert all(torch.equal(v, original[k]) for k, v in reloaded.state_dict().items())


def test_training_crash_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path, monkeypatch):
    """The loop dies while writing step 20's optimizer file: last.json still names step 10, the half-written
    folder is ignored, and the restarted run ends bit-identical to an uninterrupted one."""
    import training.loop as loop_mod
    from megaviewer.io.checkpoint import load_checkpoint_tensors
    from tests._tiny_task import TinyTask
    from training.loop import LoopConfig, train

    def cfg(out):
        return LoopConfig(out_dir=str(out), total_steps=30, batch_size=8, lr=1e-2, warmup_steps=2, ckpt_every=10,
                          log_every=10, progress=False)

    reference = load_checkpoint_tensors(train(TinyTask(), cfg(tmp_path / "ref")))
    real_save = loop_mod.save_tensors

    def flaky(path, tensors, metadata=None):
        if "step-00000020" in str(path) and Path(path).name == "optimizer.safetensors":
            Path(path).with_name(".optimizer.safetensors.crash.safetensors").write_bytes(b"half")
            raise OSError(errno.EIO, "Input/output error")
        real_save(path, tensors, metadata)

    monkeypatch.setattr(loop_mod, "save_tensors", flaky)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="Input/output error"):
        train(TinyTask(), cfg(out))
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == 10
    monkeypatch.undo()
    final = train(TinyTask(init_seed=7), cfg(out))
    resumed = load_checkpoint_tensors(final)
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert not list((out / "checkpoints").rglob(".*"))  # the stray temp file was cleaned up


@pytest.mark.parametrize("where, reason", [
    ("under-a-file", "a file is in the way of the destination folder"),
    ("disk-full", "no space left on the device"),
    ("read-only-fs", "read-only file system"),
    ("proc", ""),
])
def test_export_to_an_unwritable_place_raises_export_error_with_the_path(tmp_path, mesh, monkeypatch, where,
                                                                         reason):
    result = tiny_engine().recover(np.zeros((17, 3), np.float32), return_trace=False)
    if where == "under-a-file":
        (tmp_path / "file.txt").write_text("x")
        targets = [tmp_path / "file.txt" / "body.obj", tmp_path / "file.txt" / "person.npz"]
    elif where == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc")
        targets = [Path("/proc/self/body.obj"), Path("/proc/self/person.npz")]  # not writable, even for root
    else:
        code = errno.ENOSPC if where == "disk-full" else errno.EROFS

        def fails(*args, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(atomic_mod.tempfile, "mkstemp", fails)
        targets = [tmp_path / "body.obj", tmp_path / "person.npz"]
    for target in targets:
        with pytest.raises(ExportError, match=rf"^cannot write {re.escape(str(target))}: {reason}"):
            if target.suffix == ".obj":
                export_mesh(target, *mesh)
            else:
                export_npz(target, result)
    if where != "proc":
        assert _only(tmp_path) == (["file.txt"] if where == "under-a-file" else [])


def test_atomic_bytes_write_replaces_whole_files_only(tmp_path):
    target = tmp_path / "a.bin"
    for size in (10, 0, 100_000, 3):
        data = os.urandom(size)
        atomic_write_bytes(target, data)
        assert target.read_bytes() == data and _only(tmp_path) == ["a.bin"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
