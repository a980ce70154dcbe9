"""The musetalk backend against the MuseTalk 1.5 conformance kit (../shared/conformance/musetalk).

Default tier (seconds): the mel and whisper chunks of the kit's wave with the full-size fake
whisper (151 MB, written to a temp dir), the audio windowing, the face box / crop / VAE input /
output / paste-back conventions against the goldens, and strict loading of small fakes that keep the
official key structure and containers (legacy VAE names, whisper's ``model.`` prefix).

Full-size tier, opt-in (``-m fullsize`` or DUBLINE_FULLSIZE=1; a few minutes, 3.9 GB in a temp dir): the kit's full-size
fake directory loaded strictly, and the VAE posterior, latents, UNet output and decoded image
against the goldens on CPU float32.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.stages.backends.musetalk import audio, faces, layout, loading
from musetalk_fakes import (
    copy_model_dir,
    require_extra,
    small_configs,
    write_small_model_dir,
)

KIT_NAME = "musetalk"


@pytest.fixture(scope="module")
def kit(conformance: Path) -> Path:
    path = conformance / KIT_NAME
    if not (path / "forward_case.npz").exists():
        pytest.skip("../shared/conformance/musetalk is not present")
    return path


@pytest.fixture(scope="module")
def case(kit: Path) -> dict[str, np.ndarray]:
    with np.load(kit / "forward_case.npz") as data:
        return {key: data[key] for key in data.files}


def _kit_writer(kit: Path):
    spec = importlib.util.spec_from_file_location("musetalk_make_checkpoints", kit / "make_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full_whisper(kit: Path, tmp_path_factory) -> layout.ModelFiles:
    """The kit's full-size fake whisper (written by the kit's own code) beside small UNet/VAE fakes."""
    root = write_small_model_dir(tmp_path_factory.mktemp("musetalk_whisper"))
    writer = _kit_writer(kit)
    (root / "whisper" / "config.json").write_text((kit / "configs" / "whisper" / "config.json").read_text())
    torch.save(writer.deterministic_state_dict(writer.manifest("whisper"), prefix="model."), root / "whisper" / "pytorch_model.bin")
    return layout.locate(root)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_small_model_dir(tmp_path_factory.mktemp("musetalk_small"))


# --- audio ----------------------------------------------------------------------------------


def test_mel_of_the_kit_wave_is_the_golden(kit, full_whisper):
    extractor = loading.load_feature_extractor(full_whisper)
    mel = audio.log_mel(extractor, np.load(kit / "wave_16k.npy"))
    golden = np.load(kit / "whisper_input_features.npy")
    assert mel.shape == golden.shape == (1, 80, 3000)
    assert np.abs(mel - golden).max() <= 1e-4


def test_whisper_chunks_of_the_full_size_fake_match_the_golden(kit, full_whisper):
    encoder = loading.load_whisper_encoder(full_whisper)
    assert sum(p.numel() for p in encoder.parameters()) == 8_208_384  # the kit's encoder count
    extractor = loading.load_feature_extractor(full_whisper)
    wave = np.load(kit / "wave_16k.npy")
    steps = audio.whisper_features(extractor, encoder, wave, torch.device("cpu"), torch.float32)
    assert steps.shape == (len(wave) // 320, 5, 384)
    golden = np.load(kit / "whisper_chunks.npy")
    chunks = audio.frame_windows(steps, Fraction(25), np.arange(len(golden)))
    assert chunks.shape == golden.shape == (50, 50, 384)
    assert np.abs(chunks - golden).max() <= 1e-3


def _official_windows(steps: np.ndarray, fps: int, frames: int) -> np.ndarray:
    """The official get_whisper_chunk arithmetic (the kit's README, step 7), in numpy."""
    mult = 50 / fps
    pad = math.ceil(mult)
    layers, width = steps.shape[1:]
    padded = np.concatenate([np.zeros((pad * 2, layers, width), np.float32), steps,
                             np.zeros((pad * 3 * 2, layers, width), np.float32)])
    return np.stack([padded[math.floor(i * mult) : math.floor(i * mult) + 10].reshape(10 * layers, width)
                     for i in range(frames)])


def test_windows_equal_the_official_formula_at_25_fps_and_keep_its_alignment_at_other_rates():
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(100, 5, 8)).astype(np.float32)  # 2 s of whisper steps
    ours = audio.frame_windows(steps, Fraction(25), np.arange(50))
    assert np.array_equal(ours, _official_windows(steps, 25, 50))
    # Token k of a window is (step k // 5, layer k % 5), time-major: frame 10 starts at step 16.
    assert np.array_equal(ours[10, 7], steps[16 + 7 // 5, 7 % 5])
    assert np.all(ours[0, :20] == 0)  # steps -4..-1 are zeros, as officially
    # 30 fps: the official padding is the same (ceil(50/30) = 2), so windows agree.
    assert np.array_equal(audio.frame_windows(steps, Fraction(30), np.arange(60)), _official_windows(steps, 30, 60))
    # 24 fps: ceil(50/24) = 3 moves the official windows 2 steps earlier; ours keep 4 steps of lead.
    at_24 = audio.window_starts(Fraction(24), np.arange(48))
    assert at_24.tolist() == [math.floor(i * 50 / 24) - 4 for i in range(48)]
    official_24 = _official_windows(steps, 24, 48)
    assert np.array_equal(audio.frame_windows(steps, Fraction(24), np.arange(48))[5:45], _shifted(steps, at_24[5:45]))
    assert not np.array_equal(audio.frame_windows(steps, Fraction(24), np.arange(48)), official_24)
    # 23.976 fps: exact rational arithmetic (the official int(fps) = 23 drifts 2 steps in 1 s).
    ntsc = audio.window_starts(Fraction(24000, 1001), np.array([0, 24, 240, 2400]))
    assert ntsc.tolist() == [-4, 46, 496, 5001]  # floor(i * 50 * 1001 / 24000) - 4; int(fps) gives 5213 at 2400


def _shifted(steps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.stack([steps[s : s + 10].reshape(-1, steps.shape[2]) for s in starts])


def test_windows_past_the_audio_are_zeros_and_frames_index_from_the_audio_start():
    steps = np.ones((12, 3, 4), np.float32)  # 12 whisper steps = 0.24 s
    windows = audio.frame_windows(steps, Fraction(25), np.array([0, 4, 7, 20]))
    assert windows.shape == (4, 30, 4)
    real_steps = [(w.reshape(10, 3, 4) != 0).all(axis=(1, 2)) for w in windows]
    assert real_steps[0].tolist() == [False] * 4 + [True] * 6  # steps -4..5
    assert real_steps[1].tolist() == [True] * 8 + [False] * 2  # steps 4..13, 12 and 13 past the end
    assert real_steps[2].tolist() == [True] * 2 + [False] * 8  # steps 10..19
    assert not real_steps[3].any()  # steps 36..45


def test_positional_encoding_is_the_official_one(case):
    encoding = audio.positional_encoding(50, 384)
    summed = (torch.from_numpy(case["audio_feature"]) + encoding).numpy()
    assert np.array_equal(summed, case["audio_feature_pe"])


# --- image conventions -----------------------------------------------------------------------


def test_crop_vae_inputs_output_and_paste_back_are_the_goldens(case):
    x1, y1, x2, y2 = (int(v) for v in case["bbox"])
    frames_rgb = np.ascontiguousarray(case["frames_bgr"][..., ::-1])
    box = np.array([x1, y1, x2, min(y2 + int(case["extra_margin"]), frames_rgb.shape[1])])
    crops = np.stack([faces.crop_face(frame, box) for frame in frames_rgb])
    assert np.array_equal(crops[..., ::-1], case["crops_bgr"])  # Lanczos: exact
    assert np.array_equal(faces.vae_input(crops, masked=True), case["masked_vae_input"])
    assert np.array_equal(faces.vae_input(crops, masked=False), case["ref_vae_input"])
    out_rgb = faces.output_image(case["decoded_float_rgb"])
    assert np.array_equal(out_rgb[..., ::-1], case["output_bgr"])
    pasted = [faces.paste_face(frame, box, face) for frame, face in zip(frames_rgb, out_rgb)]
    back = np.stack([p[box[1] : box[3], box[0] : box[2]] for p in pasted])
    assert np.array_equal(back[..., ::-1], case["output_resized_to_bbox_bgr"])
    outside = np.ones(frames_rgb.shape[1:3], bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert all(np.array_equal(p[outside], f[outside]) for p, f in zip(pasted, frames_rgb))


def test_face_box_is_the_official_landmark_rule_with_the_margin():
    rng = np.random.default_rng(3)
    landmarks = np.column_stack([rng.uniform(200.2, 400.8, 68), rng.uniform(300.5, 520.9, 68)])
    landmarks[29] = [300.7, 410.6]
    points = landmarks.astype(np.int32)
    x1, x2, y2 = points[:, 0].min(), points[:, 0].max(), points[:, 1].max()
    y1 = 410 - (y2 - 410)
    box = faces.face_box(landmarks, (1080, 1920, 3), extra_margin=10)
    assert box.tolist() == [x1, y1, x2, y2 + 10]
    near_bottom = faces.face_box(landmarks, (y2 + 4, 1920, 3))
    assert near_bottom[3] == y2 + 4  # the margin is clamped to the frame
    high_nose = landmarks.copy()
    high_nose[29, 1] = 200.0  # mirrored top above the frame: clamped at 0
    assert faces.face_box(high_nose, (1080, 1920, 3))[1] == 0
    assert faces.face_box(np.full((68, 2), np.nan), (1080, 1920, 3)) is None
    assert faces.face_box(np.full((68, 2), 5.0), (1080, 1920, 3)) is None  # degenerate


# --- loading ---------------------------------------------------------------------------------


def test_small_fakes_load_strictly_with_the_official_renames(small_dir):
    files = layout.locate(small_dir)
    raw_vae = torch.load(files.vae_weights, weights_only=True)
    assert "encoder.mid_block.attentions.0.query.weight" in raw_vae  # the legacy names are in the file
    vae = loading.load_vae(files)
    assert torch.equal(vae.state_dict()["encoder.mid_block.attentions.0.to_q.weight"],
                       raw_vae["encoder.mid_block.attentions.0.query.weight"])
    assert torch.equal(vae.state_dict()["decoder.mid_block.attentions.0.to_out.0.bias"],
                       raw_vae["decoder.mid_block.attentions.0.proj_attn.bias"])
    raw_whisper = torch.load(files.whisper_weights, weights_only=True)
    assert all(k.startswith("model.") for k in raw_whisper)
    encoder = loading.load_whisper_encoder(files)
    assert torch.equal(encoder.state_dict()["conv1.weight"], raw_whisper["model.encoder.conv1.weight"])
    unet = loading.load_unet(files)
    raw_unet = torch.load(files.unet_weights, weights_only=True)
    assert list(unet.state_dict()) == list(raw_unet)
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in raw_unet.items())
    assert not any(p.is_meta or p.requires_grad for p in [*unet.parameters(), *vae.parameters(), *encoder.parameters()])
    # the old config name: attention_head_dim is the number of heads (8 in musetalk.json)
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == small_configs()["unet"]["attention_head_dim"]


def test_the_unet_config_builds_the_kits_manifest(kit):
    """The official musetalk.json builds a UNet whose keys and shapes are the manifest's (meta, no memory)."""
    require_extra()
    from diffusers import UNet2DConditionModel

    config = json.loads((kit / "configs" / "musetalkV15" / "musetalk.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    manifest = json.loads((kit / "unet_state_dict.json").read_text())["state_dict"]
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == {k: tuple(s) for k, s, _ in manifest}
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == 8


def test_safetensors_files_load_too(tmp_path):
    files = layout.locate(write_small_model_dir(tmp_path / "st", safetensors=True))
    assert files.vae_weights.suffix == files.whisper_weights.suffix == ".safetensors"
    loading.load_vae(files)
    loading.load_whisper_encoder(files)


def test_a_whisper_file_with_the_tied_lm_head_loads(small_dir, tmp_path):
    root = copy_model_dir(small_dir, tmp_path / "head")
    path = root / "whisper" / "pytorch_model.bin"
    state = torch.load(path, weights_only=True)
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"].clone()
    torch.save(state, path)
    loading.load_whisper_encoder(layout.locate(root))


@pytest.mark.parametrize(
    "part, damage, message",
    [
        ("unet", "drop", "1 missing keys"),
        ("unet", "extra", "1 unexpected keys"),
        ("unet", "reshape", "1 shape mismatches"),
        ("vae", "drop", "1 missing keys"),
        ("whisper", "drop", "1 missing keys"),
        ("whisper", "extra", "1 unexpected keys"),
    ],
)
def test_a_file_that_does_not_match_its_config_names_the_file_and_the_keys(small_dir, tmp_path, part, damage, message):
    root = copy_model_dir(small_dir, tmp_path / "bad")
    path = {"unet": root / layout.UNET_WEIGHTS, "vae": root / layout.VAE_WEIGHTS[1], "whisper": root / layout.WHISPER_WEIGHTS[1]}[part]
    state = torch.load(path, weights_only=True)
    victim = next(k for k in state if k.endswith("conv_in.weight") or k.endswith("conv1.weight"))
    if damage == "drop":
        del state[victim]
    elif damage == "extra":
        state[victim.replace("conv", "stray_conv")] = state[victim]
    else:
        state[victim] = state[victim][:1]
    torch.save(state, path)
    load = {"unet": loading.load_unet, "vae": loading.load_vae, "whisper": loading.load_whisper_encoder}[part]
    with pytest.raises(InvalidInputError, match=message) as caught:
        load(layout.locate(root))
    assert str(path) in str(caught.value)


def test_files_that_are_not_weights_or_configs_are_named(small_dir, tmp_path):
    root = copy_model_dir(small_dir, tmp_path / "junk")
    (root / layout.UNET_WEIGHTS).write_bytes(b"not a torch file")
    with pytest.raises(InvalidInputError, match="unet.pth is not a readable torch file"):
        loading.load_unet(layout.locate(root))
    torch.save({"state_dict": {"a": torch.zeros(1)}, "step": 3}, root / layout.UNET_WEIGHTS)
    with pytest.raises(InvalidInputError, match="flat state dict"):
        loading.load_unet(layout.locate(root))
    (root / layout.VAE_CONFIG).write_text("{ not json")
    with pytest.raises(InvalidInputError, match="config.json is not readable JSON"):
        loading.load_vae(layout.locate(root))


@pytest.mark.parametrize(
    "removed",
    [layout.UNET_WEIGHTS, layout.UNET_CONFIG, layout.VAE_CONFIG, layout.VAE_WEIGHTS[1], layout.WHISPER_CONFIG,
     layout.WHISPER_PREPROCESSOR, layout.WHISPER_WEIGHTS[1]],
)
def test_a_missing_file_is_named_with_the_expected_layout(small_dir, tmp_path, removed):
    root = copy_model_dir(small_dir, tmp_path / "partial")
    (root / removed).unlink()
    with pytest.raises(ModelNotFoundError) as caught:
        layout.locate(root)
    text = str(caught.value)
    assert str(root / removed) in text
    assert "musetalkV15/unet.pth" in text and "sd-vae/" in text and "whisper/preprocessor_config.json" in text


def test_a_missing_optional_package_is_named_with_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real_find_spec(name, *a))
    with pytest.raises(InvalidInputError, match=r"diffusers.*dubline\[musetalk\]"):
        loading.require_libraries()


def test_loading_never_reaches_the_network(small_dir):
    """In a fresh process with every socket connect refused, the backend's loaders and whisper run."""
    engine = Path(__file__).resolve().parents[1] / "engine"
    script = f"""
import socket, sys
attempts = []
def refuse(self, address, *args):
    attempts.append(address)
    raise OSError("network disabled by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = lambda address, *a, **k: refuse(None, address)
import numpy as np, torch, os
from dubline.stages.backends.musetalk import layout, loading, audio
files = layout.locate({str(small_dir)!r})
encoder = loading.load_whisper_encoder(files)
extractor = loading.load_feature_extractor(files)
loading.load_unet(files); loading.load_vae(files)
steps = audio.whisper_features(extractor, encoder, np.zeros(16000, np.float32), torch.device("cpu"), torch.float32)
assert steps.shape == (50, 5, 32), steps.shape
assert os.environ["HF_HUB_OFFLINE"] == "1"
print("attempts", len(attempts))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(engine), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "attempts 0" in done.stdout


# --- full size (slow) ------------------------------------------------------------------------


def _fullsize_enabled(config: pytest.Config) -> bool:
    expression = config.getoption("markexpr") or ""
    return os.environ.get("DUBLINE_FULLSIZE") == "1" or ("fullsize" in expression and "not fullsize" not in expression)


@pytest.fixture(scope="module")
def full_models(request, kit: Path, tmp_path_factory) -> loading.MuseTalkModels:
    if not _fullsize_enabled(request.config):
        pytest.skip("full-size MuseTalk conformance (3.9 GB fake weights, ~5 min): run with -m fullsize or DUBLINE_FULLSIZE=1")
    require_extra()
    root = tmp_path_factory.mktemp("musetalk_full")
    subprocess.run([sys.executable, str(kit / "make_checkpoints.py"), str(root)], check=True, timeout=900)
    files = layout.locate(root)
    models = loading.MuseTalkModels(
        unet=loading.load_unet(files),
        vae=loading.load_vae(files),
        whisper_encoder=loading.load_whisper_encoder(files),
        feature_extractor=loading.load_feature_extractor(files),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    return models


@pytest.mark.fullsize
def test_full_size_fakes_load_strictly_and_equal_the_rule(full_models, kit):
    writer = _kit_writer(kit)
    for model, name in ((full_models.unet, "unet"), (full_models.vae, "vae")):
        manifest = json.loads((kit / f"{name}_state_dict.json").read_text())
        rule = writer.deterministic_state_dict(manifest["state_dict"])
        rule = {manifest.get("renamed_on_load", {}).get(k, k): v for k, v in rule.items()}
        state = model.state_dict()
        assert set(state) == set(rule)
        assert all(torch.equal(state[k], v) for k, v in rule.items())
    assert sum(p.numel() for p in full_models.unet.parameters()) == 849_947_844
    assert sum(p.numel() for p in full_models.vae.parameters()) == 83_653_863


@pytest.mark.fullsize
def test_full_size_vae_posterior_and_latents_match_the_goldens(full_models, case):
    from dubline.stages.backends.musetalk.infer import MuseTalkRunner

    runner = MuseTalkRunner(full_models, batch_size=2)
    for name in ("masked", "ref"):
        with torch.inference_mode():
            dist = full_models.vae.encode(torch.from_numpy(case[f"{name}_vae_input"])).latent_dist
        assert np.abs(dist.mean.numpy() - case[f"{name}_mean"]).max() <= 1e-3
        assert np.abs(dist.logvar.numpy() - case[f"{name}_logvar"]).max() <= 1e-3
        mean, std = runner.posterior(case[f"{name}_vae_input"])
        latents = (mean + std * torch.from_numpy(case[f"{name}_eps"])) * full_models.scaling_factor
        assert np.abs(latents.numpy() - case[f"{name}_latents"]).max() <= 1e-3
    assert full_models.scaling_factor == pytest.approx(float(case["scaling_factor"]))


@pytest.mark.fullsize
def test_full_size_unet_and_decoder_match_the_goldens(full_models, case):
    from dubline.stages.backends.musetalk.infer import MuseTalkRunner

    with torch.inference_mode():
        predicted = full_models.unet(
            torch.from_numpy(case["unet_input"]), torch.tensor([0]),
            encoder_hidden_states=torch.from_numpy(case["audio_feature_pe"]),
        ).sample.numpy()
        decoded = full_models.vae.decode(torch.from_numpy(case["unet_output"]) / full_models.scaling_factor).sample.numpy()
    assert np.abs(predicted - case["unet_output"]).max() <= 1e-3
    assert np.abs(decoded - case["decoded_float_rgb"]).max() <= 5e-3
    # The runner's whole generate step (PE added, UNet at timestep 0, decode, uint8): BGR goldens.
    faces_rgb = MuseTalkRunner(full_models, batch_size=2).generate(torch.from_numpy(case["unet_input"]), case["audio_feature"])
    difference = np.abs(faces_rgb[..., ::-1].astype(int) - case["output_bgr"].astype(int))
    assert difference.max() <= 2 and (difference == 0).mean() >= 0.999
