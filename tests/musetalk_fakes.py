"""Small fake MuseTalk 1.5 model directories for fast tests.

Same files, containers and key structure as the official ones (and the conformance kit's
``make_checkpoints.py``): a flat ``unet.pth``; the VAE with diffusers 0.4's legacy mid-block
attention names; whisper as a ``WhisperForConditionalGeneration`` file (``model.`` prefix). Only the
widths shrink (configs below), so a load exercises the same renames and strictness in a second.
Values follow the kit's deterministic rule; they are random weights, so the faces they generate
are noise: these prove plumbing, never quality.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from dubline.stages.backends.musetalk.loading import LEGACY_ATTENTION_NAMES

KIT_CONFIGS = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "musetalk" / "configs"
#: The width the UNet's cross-attention and the whisper model share (official: 384).
SMALL_WIDTH = 32


def small_configs() -> dict[str, dict]:
    """Reduced configs with the official block structure (block types, layers, 4 VAE levels)."""
    unet = {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
        "attention_head_dim": 2, "block_out_channels": [16, 16, 16, 16], "center_input_sample": False,
        "cross_attention_dim": SMALL_WIDTH,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 8, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }
    vae = {
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
        "block_out_channels": [8, 8, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3,
        "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 8, "out_channels": 3, "sample_size": 256,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    whisper = {
        "activation_function": "gelu", "architectures": ["WhisperForConditionalGeneration"], "d_model": SMALL_WIDTH,
        "decoder_attention_heads": 4, "decoder_ffn_dim": 64, "decoder_layers": 1, "decoder_start_token_id": 50258,
        "encoder_attention_heads": 4, "encoder_ffn_dim": 64, "encoder_layers": 4, "bos_token_id": 50257,
        "eos_token_id": 50257, "pad_token_id": 50257, "max_source_positions": 1500, "max_target_positions": 448,
        "model_type": "whisper", "num_hidden_layers": 4, "num_mel_bins": 80, "scale_embedding": False,
        "vocab_size": 51865, "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
    }
    preprocessor = {
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80, "hop_length": 160,
        "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "WhisperProcessor", "return_attention_mask": False, "sampling_rate": 16000,
    }
    return {"unet": unet, "vae": vae, "whisper": whisper, "preprocessor": preprocessor}


def deterministic_values(layout: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """The kit's rule (none of these models has batch-norm statistics)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        if len(shape) > 1:
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05 + (1.0 if key.endswith(".weight") else 0.0)
    return state


def _layout(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]


def legacy_vae_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Today's VAE names back to diffusers 0.4's, as the sd-vae-ft-mse file has them."""
    modern = {new: old for old, new in LEGACY_ATTENTION_NAMES.items()}
    out = {}
    for key, tensor in state.items():
        for new, old in modern.items():
            marker = f".mid_block.attentions.0.{new}."
            if marker in key:
                key = key.replace(marker, f".mid_block.attentions.0.{old}.")
        out[key] = tensor
    return out


def require_extra() -> None:
    """Skip the calling test when the optional extra dubline[musetalk] is not installed."""
    import pytest

    for name in ("diffusers", "transformers", "safetensors"):
        pytest.importorskip(name, reason="needs the optional extra dubline[musetalk]")


def write_small_model_dir(out: Path, safetensors: bool = False) -> Path:
    """A small fake model directory at ``out`` (official layout); ``safetensors`` for the VAE and
    whisper weights in the HF repos' other format. Skips the test without dubline[musetalk]."""
    require_extra()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperModel

    configs = small_configs()
    out = Path(out)
    for folder in ("musetalkV15", "sd-vae", "whisper"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        whisper = WhisperModel(WhisperConfig.from_dict(configs["whisper"]))
    (out / "musetalkV15" / "musetalk.json").write_text(json.dumps(configs["unet"], indent=2))
    torch.save(deterministic_values(_layout(unet)), out / "musetalkV15" / "unet.pth")
    (out / "sd-vae" / "config.json").write_text(json.dumps(configs["vae"], indent=2))
    vae_state = legacy_vae_names(deterministic_values(_layout(vae)))
    whisper_state = {f"model.{k}": v for k, v in deterministic_values(_layout(whisper)).items()}
    (out / "whisper" / "config.json").write_text(json.dumps(configs["whisper"], indent=2))
    (out / "whisper" / "preprocessor_config.json").write_text(json.dumps(configs["preprocessor"], indent=2))
    if safetensors:
        from safetensors.torch import save_file

        save_file(vae_state, str(out / "sd-vae" / "diffusion_pytorch_model.safetensors"))
        save_file(whisper_state, str(out / "whisper" / "model.safetensors"))
    else:
        torch.save(vae_state, out / "sd-vae" / "diffusion_pytorch_model.bin")
        torch.save(whisper_state, out / "whisper" / "pytorch_model.bin")
    return out


def copy_model_dir(source: Path, out: Path) -> Path:
    """A copy to damage in a test."""
    shutil.copytree(source, out)
    return out
