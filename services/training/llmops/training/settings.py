"""Training service settings (prefix ``LLMOPS_TRAINING_``).

Nested values take JSON, e.g. ``LLMOPS_TRAINING_DEFAULTS='{"lora_rank": 16, "learning_rate": 1e-4}'``.
The Ray connection comes from ``LLMOPS_RAY_ADDRESS`` / ``LLMOPS_RAY_NUM_CPUS``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from llmops.core.settings import DatabaseSettings, RaySettings, ServiceSettings
from llmops.training.spec import Hyperparameters, Resources


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "training"

    ray: RaySettings = Field(default_factory=RaySettings)

    # Defaults for what a job spec leaves unset (0 / empty in the gRPC message).
    defaults: Hyperparameters = Field(default_factory=Hyperparameters)
    default_resources: Resources = Field(default_factory=Resources)

    # Checkpoints (adapter, optimizer, scheduler, step) every this many steps; 0 turns them off.
    checkpoint_every: int = Field(50, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    # Where Ray Train keeps its run folders; default <data_dir>/training/ray_results. On a cluster
    # it must be storage every node reaches (and so must <data_dir>/training/jobs, the checkpoints).
    ray_storage_path: Path | None = None
    ray_object_store_mb: int = Field(256, ge=80)
    progress_poll_seconds: float = Field(0.5, gt=0, le=10)

    # Evaluation caps: the eval split is scored on at most this many examples (loss) and answered
    # greedily on at most this many (ROUGE-L, exact match, judge).
    eval_max_loss_examples: int = Field(256, ge=1)
    eval_max_generate_examples: int = Field(16, ge=0)
    eval_max_new_tokens: int = Field(64, ge=1, le=4096)
    eval_batch_size: int = Field(8, ge=1)
    # torch threads of the evaluation (in the service process); 0 leaves torch's default. One thread
    # is much faster than two on a machine whose cores other processes keep busy.
    eval_num_threads: int = Field(0, ge=0)

    # The judge is serving's Generate with this model ("" = serving's default model).
    judge_model: str = ""
    judge_timeout_seconds: float = Field(60.0, gt=0)
    # How long stop() lets a running job write a checkpoint before Ray is shut down.
    stop_timeout_seconds: float = Field(6.0, ge=0)

    def resolved_ray_storage_path(self) -> Path:
        return self.ray_storage_path or self.platform.data_dir / "training" / "ray_results"

    def jobs_dir(self) -> Path:
        return self.platform.data_dir / "training" / "jobs"
