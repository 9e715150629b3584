"""Stand-ins for a service a test does not start: real gRPC servers on loopback, answering from a dict."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from llmops.cli.local import free_port
from llmops.contracts.rpc.labeling.v1 import labeling_pb2, labeling_pb2_grpc


class DatasetVersions(labeling_pb2_grpc.LabelingServiceServicer):
    """Labeling's GetDatasetVersion over ``versions`` (version id -> uri); other RPCs are UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}

    def GetDatasetVersion(
        self, request: labeling_pb2.GetDatasetVersionRequest, context: grpc.ServicerContext
    ) -> labeling_pb2.DatasetVersion:
        if request.version_id not in self.versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"dataset version {request.version_id} not found")
        return labeling_pb2.DatasetVersion(
            version_id=request.version_id, uri=self.versions[request.version_id]
        )


@contextmanager
def labeling_dataset_versions(versions: DatasetVersions) -> Iterator[str]:
    """Serve ``versions`` as labeling on a free loopback port; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    labeling_pb2_grpc.add_LabelingServiceServicer_to_server(versions, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    try:
        yield address
    finally:
        server.stop(0)
