"""Checking a job before it is queued: its spec, base model, dataset version, resources, champion.

Reading files is blocking, so it runs in threads; finding the dataset version asks labeling. Every
URL a job names must lie under the platform's artifact root; anything else is refused with
INVALID_ARGUMENT before anything is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

from llmops.core.artifacts import ArtifactStore
from llmops.core.errors import NotFound
from llmops.training.dataset_versions import DatasetVersions
from llmops.training.ray_runner import TrainingCluster
from llmops.training.settings import Settings
from llmops.training.spec import ALL_LINEAR, InvalidSpec, JobSpec, build_spec
from llmops.training.trainer import data as D
from llmops.training.trainer.models import BaseModelNotFound, linear_module_names, resolve_base_model

# Labels that name an artifact the service reads: checked against the artifact root at submission.
URL_LABELS = ("dataset_uri", "champion_adapter_uri")


class JobValidation:
    """``await validation.validate(raw)``: the spec, its dataset URI and its base model folder."""

    def __init__(
        self,
        settings: Settings,
        artifacts: ArtifactStore,
        cluster: TrainingCluster,
        datasets: DatasetVersions,
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.cluster = cluster
        self.datasets = datasets

    async def validate(
        self, raw: Mapping[str, Any], zero_is_default: bool = True
    ) -> tuple[JobSpec, str, Path]:
        """The validated spec, its dataset URI and its base model folder."""
        spec = build_spec(
            raw, self.settings.defaults, self.settings.default_resources, zero_is_default=zero_is_default
        )
        # Before anything is read: a label may only name an artifact under the platform's root.
        for label in URL_LABELS:
            if spec.labels.get(label):
                self.artifacts.require(spec.labels[label], f"labels.{label}")
        base_path = await asyncio.to_thread(self._check_base_model, spec)
        dataset_uri = await self.find_dataset(spec.dataset_version_id, spec.labels)
        await asyncio.to_thread(self._check_data, spec, dataset_uri)
        return spec, dataset_uri, base_path

    def _check_base_model(self, spec: JobSpec) -> Path:
        """The base model's folder, once the adapter's target modules are known to be in it."""
        try:
            base_path = resolve_base_model(spec.base_model, self.settings.platform.models_dir)
        except BaseModelNotFound as exc:
            raise NotFound(str(exc)) from None
        targets = spec.hyperparameters.target_modules
        if ALL_LINEAR not in targets:
            known = linear_module_names(str(base_path))
            unknown = sorted(set(targets) - known)
            if unknown:
                raise InvalidSpec(
                    f"hyperparameters.target_modules: {', '.join(unknown)} not in {spec.base_model}; "
                    f"its linear layers are {', '.join(sorted(known))} (or use {ALL_LINEAR!r})"
                )
        return base_path

    def _check_data(self, spec: JobSpec, dataset_uri: str) -> None:
        """The data fits the method, the resources fit the cluster, the champion exists (reads files)."""
        try:
            counts = D.split_counts(dataset_uri, spec.method)
        except ValueError as exc:
            raise InvalidSpec(str(exc)) from None
        if counts.get("train", 0) == 0:
            raise InvalidSpec(
                f"dataset version {spec.dataset_version_id} has no usable {spec.method} example in its "
                f"train split ({D.columns_for(spec.method)} with non-empty answers)"
            )
        self._check_resources(spec)
        champion = spec.labels.get("champion_adapter_uri", "")
        if champion and not _exists(f"{champion.rstrip('/')}/adapter_config.json"):
            raise NotFound(f"labels.champion_adapter_uri: no adapter_config.json under {champion}")

    async def find_dataset(self, version_id: str, labels: Mapping[str, str]) -> str:
        """The URI of a dataset version's Parquet file (see the module docstring).

        Raises:
            InvalidArgument: the URI lies outside the artifact root.
            NotFound: no such version, or its file is gone.
            Unavailable: labeling cannot be reached.
        """
        explicit = labels.get("dataset_uri", "")
        if explicit:
            uri = self.artifacts.require(explicit, "labels.dataset_uri")
            where = "labels.dataset_uri"
        else:
            found = await self.datasets.uri(version_id)
            uri = self.artifacts.require(found, f"dataset version {version_id}'s uri")
            where = f"dataset version {version_id}"
        if not await asyncio.to_thread(_exists, uri):
            raise NotFound(f"{where}: {uri} does not exist")
        return uri

    def _check_resources(self, spec: JobSpec) -> None:
        if not self.cluster.local:
            # A remote cluster may autoscale: what it has now is no limit.
            return
        res = spec.resources
        have = self.cluster.resources()
        cpus, gpus = res.num_workers * res.cpus_per_worker, res.num_workers * res.gpus_per_worker
        if cpus > have.get("CPU", 0):
            raise InvalidSpec(
                f"resources: {res.num_workers} worker(s) x {res.cpus_per_worker:g} CPU need {cpus:g} CPUs; "
                f"the local Ray cluster has {have.get('CPU', 0):g}"
            )
        if gpus > have.get("GPU", 0):
            raise InvalidSpec(
                f"resources: {res.num_workers} worker(s) x {res.gpus_per_worker:g} GPU need {gpus:g} GPUs; "
                f"the local Ray cluster has {have.get('GPU', 0):g}"
            )


def _exists(uri: str) -> bool:
    fs, path = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(path))
