"""The CPU budget every stage sizes its threads by (a batch worker's share of its machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dubline.core import cpus


def test_the_budget_is_the_machine_unless_limited(monkeypatch) -> None:
    monkeypatch.delenv(cpus.ENVIRONMENT, raising=False)
    assert cpus.cpu_budget() == cpus.machine_cpus()
    assert cpus.codec_threads() == 0  # FFmpeg's own choice
    monkeypatch.setenv(cpus.ENVIRONMENT, "1")
    assert cpus.cpu_budget() == 1
    assert cpus.codec_threads() == (0 if cpus.machine_cpus() == 1 else 1)
    monkeypatch.setenv(cpus.ENVIRONMENT, str(cpus.machine_cpus() + 5))  # never more than the machine
    assert cpus.cpu_budget() == cpus.machine_cpus()
    monkeypatch.setenv(cpus.ENVIRONMENT, "none")
    assert cpus.cpu_budget() == cpus.machine_cpus()


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        cpus.limit_cpus(0)


def test_a_batch_worker_given_one_cpu_resizes_opencv_torch_and_our_own_pools(tmp_path) -> None:
    # In a fresh process, as a Ray actor is: the limit is process-wide by design.
    code = f"""
import cv2, torch
from dubline.apps.batch.worker import ShotWorker
from dubline.pipeline.analysis import default_workers
from dubline.pipeline.batch import ShotSettings
from dubline.stages.media.write import codec_threads
from dubline.core.cpus import cpu_budget
ShotWorker(ShotSettings(cache_root={str(tmp_path)!r}), cpus=1)
print(cv2.getNumThreads(), torch.get_num_threads(), default_workers(), codec_threads(), cpu_budget())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:3] == ["1", "1", "1"]
    assert out[3] == ("0" if cpus.machine_cpus() == 1 else "1")
    assert out[4] == "1"  # what the render reads to run its frame loop in one thread
