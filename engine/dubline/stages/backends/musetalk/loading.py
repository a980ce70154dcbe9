"""Strict, offline loading of MuseTalk 1.5's three models with diffusers and transformers.

Each model is built from its config on the ``meta`` device (no random initialisation of 850 M
parameters), then its file's state dict is checked key by key and shape by shape against the
model and assigned (``load_state_dict(strict=True, assign=True)``). Any missing, unexpected or
misshapen tensor fails with one message naming the file. Renames, exactly those the official
loaders make:

- sd-vae-ft-mse was saved by diffusers 0.4: its mid-block attention tensors carry the legacy names
  ``query/key/value/proj_attn``, which today's ``AutoencoderKL`` calls ``to_q/to_k/to_v/to_out.0``.
- whisper's file is a ``WhisperForConditionalGeneration`` checkpoint: keys are prefixed ``model.``
  and it may hold the tied LM head ``proj_out.weight``, which the encoder never uses.

Only whisper's encoder is kept resident (the file is checked against the whole ``WhisperModel``).
Nothing reaches the Hugging Face hub: configs are read from the user's directory and handed to
``from_config`` / ``from_dict``, weights are read with ``torch.load(weights_only=True)`` or
safetensors, and the hub's offline switches are set before diffusers or transformers import.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before diffusers / transformers (and so huggingface_hub) are imported anywhere in this process
# by us; a value the user set wins.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dubline.core.errors import InvalidInputError  # noqa: E402
from dubline.stages.backends.musetalk.layout import (  # noqa: E402
    ModelFiles,
    read_config,
)

#: The legacy (diffusers < 0.15) names of the VAE's mid-block attention, and today's.
LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
WHISPER_FILE_PREFIX = "model."
#: In a WhisperForConditionalGeneration file, beside the WhisperModel keys; unused by the encoder.
WHISPER_IGNORED_KEYS = frozenset({"proj_out.weight"})


#: Import names of the optional extra ``dubline[musetalk]``.
REQUIRED_LIBRARIES = ("diffusers", "transformers", "safetensors")


def require_libraries() -> None:
    """InvalidInputError naming the missing packages of the optional extra, if any."""
    missing = [name for name in REQUIRED_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidInputError(
            f"the musetalk backend needs the Python package(s) {', '.join(missing)}, which are not installed: "
            "pip install 'dubline[musetalk]'"
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict in a ``.safetensors`` or torch file (no pickled code is run)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise InvalidInputError(f"weights file {path} is not a readable safetensors file: {error}") from error
    try:
        try:
            # mmap: the 3.4 GB UNet is paged in from the file instead of copied into memory.
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            content = torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except pickle.UnpicklingError as error:
        # torch says this both for files holding objects beyond tensors and for some corruption.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInputError(
            f"weights file {path} is not a readable torch file of plain tensors ({reason[:160]}); the "
            "official MuseTalk files are flat dicts of tensors"
        ) from error
    except Exception as error:  # a corrupt or foreign file fails in many ways inside torch.load
        raise InvalidInputError(f"weights file {path} is not a readable torch file: {error!r}") from error
    if not isinstance(content, Mapping) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise InvalidInputError(f"weights file {path} is not a flat state dict of tensors (name -> tensor)")
    return dict(content)


def check_layout(path: Path, expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str) -> None:
    """One InvalidInputError listing missing/unexpected keys and shape mismatches, if any."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (first: {'; '.join(mismatched[:3])})")
    raise InvalidInputError(f"weights file {path} does not match the {what} its config describes: {'; '.join(problems)}")


def _assign(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str,
            device: str | torch.device, dtype: torch.dtype) -> nn.Module:
    check_layout(path, model.state_dict(), state, what)
    model.load_state_dict(state, strict=True, assign=True)
    left_on_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left_on_meta:  # a buffer the file does not carry; would fail at the first forward otherwise
        raise InvalidInputError(f"{what} from {path}: no values for {', '.join(left_on_meta[:3])}")
    # nn.Module.to: diffusers' own .to() warns about fp32-pinned modules, which these models lack.
    return nn.Module.to(model, device=device, dtype=dtype).eval().requires_grad_(False)


def _from_config(cls: Any, config_path: Path, what: str) -> nn.Module:
    config = read_config(config_path)
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise InvalidInputError(f"{what} config {config_path} cannot build the model: {error}") from error


def load_unet(files: ModelFiles, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """MuseTalk's ``UNet2DConditionModel`` (musetalk.json + unet.pth), eval mode, on ``device``."""
    from diffusers import UNet2DConditionModel

    model = _from_config(UNet2DConditionModel, files.unet_config, "MuseTalk UNet")
    return _assign(model, read_state_dict(files.unet_weights), files.unet_weights, "MuseTalk UNet", device, dtype)


def rename_legacy_vae_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers 0.4 attention names (``mid_block.attentions.N.query``...) to today's (``to_q``...)."""
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        # (encoder|decoder).mid_block.attentions.N.<name>.(weight|bias)
        if len(parts) == 6 and parts[1] == "mid_block" and parts[2] == "attentions" and parts[4] in LEGACY_ATTENTION_NAMES:
            key = ".".join([*parts[:4], LEGACY_ATTENTION_NAMES[parts[4]], parts[5]])
        renamed[key] = tensor
    return renamed


def load_vae(files: ModelFiles, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """sd-vae-ft-mse as a diffusers ``AutoencoderKL``, legacy attention names accepted."""
    from diffusers import AutoencoderKL

    model = _from_config(AutoencoderKL, files.vae_config, "sd-vae AutoencoderKL")
    state = rename_legacy_vae_keys(read_state_dict(files.vae_weights))
    return _assign(model, state, files.vae_weights, "sd-vae AutoencoderKL", device, dtype)


def load_whisper_encoder(files: ModelFiles, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """whisper's encoder; the file is checked against the whole ``WhisperModel`` first."""
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    raw = read_config(files.whisper_config)
    try:
        config = WhisperConfig.from_dict(raw)
    except (TypeError, ValueError, KeyError) as error:
        raise InvalidInputError(f"whisper config {files.whisper_config} cannot build the model: {error}") from error
    state = read_state_dict(files.whisper_weights)
    if any(k.startswith(WHISPER_FILE_PREFIX) for k in state):
        state = {k.removeprefix(WHISPER_FILE_PREFIX): v for k, v in state.items() if k not in WHISPER_IGNORED_KEYS}
    with torch.device("meta"):
        whole = WhisperModel(config)
        encoder = WhisperEncoder(config)
    check_layout(files.whisper_weights, whole.state_dict(), state, "whisper WhisperModel")
    encoder_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    return _assign(encoder, encoder_state, files.whisper_weights, "whisper encoder", device, dtype)


def load_feature_extractor(files: ModelFiles) -> Any:
    """``WhisperFeatureExtractor`` from preprocessor_config.json (mel filters are recomputed)."""
    from transformers import WhisperFeatureExtractor

    try:
        return WhisperFeatureExtractor.from_dict(read_config(files.whisper_preprocessor))
    except (TypeError, ValueError, KeyError) as error:
        raise InvalidInputError(f"whisper preprocessor config {files.whisper_preprocessor} is not usable: {error}") from error


@dataclass(frozen=True)
class MuseTalkModels:
    """The resident models one render uses (all on one device, one dtype)."""

    unet: nn.Module
    vae: nn.Module
    whisper_encoder: nn.Module
    feature_extractor: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def scaling_factor(self) -> float:
        """The VAE latent scale (0.18215: diffusers' default, absent from sd-vae's config)."""
        return float(self.vae.config.scaling_factor)


def resident_models(files: ModelFiles, device: str, dtype: torch.dtype, models: Any = None) -> MuseTalkModels:
    """The three models from ``files``, loaded once per (file, device, dtype) through the registry."""
    require_libraries()
    if models is None:
        from dubline.core.models import registry

        models = registry()

    def key(part: str, path: Path) -> tuple[str, str, str]:
        return (f"musetalk:{part}:{path.resolve()}", str(device), str(dtype))

    unet = models.get(key("unet", files.unet_weights), lambda: load_unet(files, device, dtype))
    vae = models.get(key("vae", files.vae_weights), lambda: load_vae(files, device, dtype))
    encoder = models.get(key("whisper", files.whisper_weights), lambda: load_whisper_encoder(files, device, dtype))
    extractor = models.get(key("features", files.whisper_preprocessor), lambda: load_feature_extractor(files), size_bytes=0)
    return MuseTalkModels(unet, vae, encoder, extractor, torch.device(device), dtype)
