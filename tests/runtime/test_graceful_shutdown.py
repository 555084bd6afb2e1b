"""SIGTERM with 20 in-flight 2 s RPCs: all complete, health turns NOT_SERVING at once, and the
process exits within its grace period (the bootstrap every service uses)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import free_port, run_process

GRACE_SECONDS = 6
RPC_SECONDS = 2


async def wait_serving(address: str, timeout: float = 30) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # types-grpcio-health-checking declares HealthStub without its methods
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)  # type: ignore[attr-defined]
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server never became SERVING")


async def test_sigterm_drains_in_flight_rpcs_and_reports_not_serving(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = run_process(
        [sys.executable, "-m", "tests.runtime.slow_server"],
        {"SHOP_GRPC_ADDRESS": address, "SHOP_GRACE_SECONDS": str(GRACE_SECONDS), "SLOW_SECONDS": str(RPC_SECONDS)},
        tmp_path / "slow.log",
    )
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))  # type: ignore[attr-defined]  # as above
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING

            stub = payments_pb2_grpc.PaymentsServiceStub(channel)
            calls = [
                asyncio.ensure_future(stub.ListPayments(payments_pb2.ListPaymentsRequest(), timeout=20))
                for _ in range(20)
            ]
            await asyncio.sleep(0.5)  # the 20 RPCs are in flight (each takes 2 s)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)

            update = await asyncio.wait_for(watch.read(), timeout=2)
            not_serving_after = time.monotonic() - signalled
            assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING

            results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert len(results) == 20
        exit_code = await asyncio.to_thread(process.wait, GRACE_SECONDS + 5)
        exited_after = time.monotonic() - signalled
        assert exit_code == 0
        assert not_serving_after < 1.0
        assert exited_after < GRACE_SECONDS + 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "slow.log").read_text()
    assert "server.stopped" in log


async def test_new_rpcs_are_refused_while_draining(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = run_process(
        [sys.executable, "-m", "tests.runtime.slow_server"],
        {"SHOP_GRPC_ADDRESS": address, "SHOP_GRACE_SECONDS": str(GRACE_SECONDS), "SLOW_SECONDS": str(RPC_SECONDS)},
        tmp_path / "slow.log",
    )
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = payments_pb2_grpc.PaymentsServiceStub(channel)
            in_flight = asyncio.ensure_future(stub.ListPayments(payments_pb2.ListPaymentsRequest(), timeout=20))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            late_error = None
            try:
                await stub.ListPayments(payments_pb2.ListPaymentsRequest(), timeout=5)
            except grpc.aio.AioRpcError as exc:
                late_error = exc.code()
            await in_flight
        assert late_error == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.to_thread(process.wait, GRACE_SECONDS + 5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
