"""Model directory lookup and the ModelRegistry: load once, LRU eviction by budget, info."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.core.models import (
    ModelKey,
    ModelRegistry,
    estimate_bytes,
    model_dir,
    registry,
    require_weight,
)


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("DUBLINE_MODELS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def test_model_dir_precedence(isolated_env, monkeypatch):
    tmp = isolated_env
    assert model_dir() == tmp / "data" / "dubline" / "models"
    config = tmp / "config" / "dubline" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'models_dir = "{tmp / "from_config"}"\n')
    assert model_dir() == tmp / "from_config"
    monkeypatch.setenv("DUBLINE_MODELS", str(tmp / "from_env"))
    assert model_dir() == tmp / "from_env"


def test_bad_config_names_the_file(isolated_env):
    config = isolated_env / "config" / "dubline" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("models_dir = [unclosed\n")
    with pytest.raises(InvalidInputError, match="config.toml"):
        model_dir()


def test_require_weight_names_expected_path_and_env(isolated_env, monkeypatch):
    weights = isolated_env / "weights"
    weights.mkdir()
    monkeypatch.setenv("DUBLINE_MODELS", str(weights))
    with pytest.raises(ModelNotFoundError) as raised:
        require_weight("wav2lip_gan.pth", "the wav2lip backend")
    message = str(raised.value)
    assert str(weights / "wav2lip_gan.pth") in message and "DUBLINE_MODELS" in message
    (weights / "wav2lip_gan.pth").write_bytes(b"x")
    assert require_weight("wav2lip_gan.pth", "the wav2lip backend") == weights / "wav2lip_gan.pth"


def test_loads_once_under_concurrency():
    models = ModelRegistry(budget_bytes=None)
    calls = 0
    calls_lock = threading.Lock()
    started = threading.Barrier(16)

    def slow_loader():
        nonlocal calls
        with calls_lock:
            calls += 1
        time.sleep(0.2)  # long enough that all 16 threads arrive while it is loading
        return object()

    results: list[object] = []

    def worker():
        started.wait()
        results.append(models.get(("slow", "cpu", "float32"), slow_loader, size_bytes=10))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert len(results) == 16 and all(r is results[0] for r in results)


def test_other_keys_load_while_one_is_loading():
    models = ModelRegistry(budget_bytes=None)
    release = threading.Event()

    def blocked_loader():
        release.wait(5)
        return "slow"

    thread = threading.Thread(target=models.get, args=(("slow", "cpu", "float32"), blocked_loader, 1))
    thread.start()
    try:
        assert models.get(("fast", "cpu", "float32"), lambda: "fast", 1) == "fast"
        assert thread.is_alive()  # the slow key was still loading: the fast one did not wait for it
    finally:
        release.set()
        thread.join()


def test_lru_eviction_by_budget():
    models = ModelRegistry(budget_bytes=250)
    models.get(("a", "cpu", "float32"), lambda: "A", size_bytes=100)
    models.get(("b", "cpu", "float32"), lambda: "B", size_bytes=100)
    models.get(("a", "cpu", "float32"), lambda: "unused")  # touch a: b is now least recently used
    models.get(("c", "cpu", "float32"), lambda: "C", size_bytes=100)
    assert [info.name for info in models.loaded()] == ["a", "c"]
    assert models.total_bytes() == 200
    reloads = []
    models.get(("b", "cpu", "float32"), lambda: reloads.append(1) or "B2", size_bytes=100)
    assert reloads == [1]
    # A model bigger than the whole budget still loads (its caller needs it) and pushes out the rest.
    assert models.get(("huge", "cpu", "float32"), lambda: "H", size_bytes=1000) == "H"
    assert [info.name for info in models.loaded()] == ["huge"]


def test_loaded_info_and_size_estimate():
    models = ModelRegistry(budget_bytes=None)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    expected = (8 * 3 * 3 * 3 + 8 + 8 + 8) * 4 + (8 + 8) * 4 + 8  # params, running stats, counter
    assert estimate_bytes(module) == expected

    def loader():
        time.sleep(0.05)
        return module

    before = time.time()
    assert models.get(("conv", torch.device("cpu"), torch.float32), loader) is module
    [info] = models.loaded()
    assert (info.name, info.device, info.dtype, info.bytes) == ("conv", "cpu", "float32", expected)
    assert info.load_seconds >= 0.05 and info.last_used >= before
    # torch objects and their string names address the same entry.
    assert models.get(ModelKey("conv", "cpu", "float32"), lambda: None) is module
    assert models.evict(("conv", "cpu", "torch.float32")) is True
    assert models.loaded() == [] and models.evict(("conv", "cpu", "float32")) is False


def test_failed_load_leaves_nothing_and_can_retry():
    models = ModelRegistry(budget_bytes=None)

    def broken():
        raise ModelNotFoundError("missing.pth")

    with pytest.raises(ModelNotFoundError):
        models.get(("x", "cpu", "float32"), broken)
    assert models.loaded() == []
    assert models.get(("x", "cpu", "float32"), lambda: "ok", 1) == "ok"


def test_default_registry_is_process_wide():
    assert registry() is registry()
    with pytest.raises(InvalidInputError):
        ModelRegistry(budget_bytes=0)
