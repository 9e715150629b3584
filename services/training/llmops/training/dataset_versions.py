"""Where a dataset version's files are: asked of labeling (GetDatasetVersion), which owns them."""

from __future__ import annotations

import grpc

from llmops.contracts.rpc.labeling.v1 import labeling_pb2, labeling_pb2_grpc
from llmops.core.errors import NotFound, Unavailable
from llmops.training.spec import InvalidSpec

# Labeling not answering (down, or slow beyond the deadline) is worth a retry by the caller.
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class DatasetVersions:
    """``await versions.uri(version_id)``: the URI labeling gives for the version's Parquet file.

    ``channel`` comes from ``runtime.channel("labeling")`` (API key, request id and deadline added;
    closed by the runtime).
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = labeling_pb2_grpc.LabelingServiceStub(channel)

    async def uri(self, version_id: str) -> str:
        """The version's URI as labeling has it (not yet checked against the artifact root).

        Raises:
            NotFound: labeling has no such version.
            InvalidSpec: labeling refused the id.
            Unavailable: labeling cannot be reached now.
        """
        try:
            version = await self._stub.GetDatasetVersion(
                labeling_pb2.GetDatasetVersionRequest(version_id=version_id)
            )
        except grpc.aio.AioRpcError as exc:
            # Labeling's answer, translated to what it means for this job's submission.
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"dataset version {version_id!r} not found: {exc.details()}") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidSpec(f"dataset_version_id: {exc.details()}") from None
            if exc.code() in _TRANSIENT:
                raise Unavailable(
                    f"labeling cannot be reached to look up dataset version {version_id!r} "
                    f"({exc.code().name}); retry later"
                ) from None
            raise
        if not version.uri:
            raise NotFound(f"dataset version {version_id!r} has no files in labeling")
        return version.uri
