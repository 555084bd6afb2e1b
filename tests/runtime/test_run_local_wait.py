"""`make run` waits until every service instance is SERVING by its own gRPC health check (issue 11:
the gateway's /readyz is 200 while some backends are down, so it no longer means "all up")."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scripts import run_local
from tests.harness import free_port


@pytest.fixture
def backend():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_waits_until_every_instance_is_serving(backend):
    address, servicer = backend
    threading.Timer(1.0, servicer.set, ("", health_pb2.HealthCheckResponse.SERVING)).start()
    started = time.monotonic()
    run_local.wait_serving([address], [], timeout=20)
    assert time.monotonic() - started >= 0.9


def test_an_instance_that_never_serves_fails_the_start(backend):
    address, _servicer = backend
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match="not SERVING") as raised:
        run_local.wait_serving([address, down], [], timeout=1.5)
    assert address in str(raised.value) and down in str(raised.value)
