"""`taifa-projector run` as a process: health, readiness, metrics, clean SIGTERM."""

from __future__ import annotations

import asyncio
import time

import httpx
from taifa_localstack import ServiceProcess, free_port

from tests.integration.projector.conftest import PROJECTOR_BIN
from tests.integration.projector.projector_harness import ReadSide, eventually, produce
from tests.unit.projector.projector_events import Domain


async def test_process_serves_health_readiness_and_metrics_and_stops_on_sigterm(isolated, tmp_path) -> None:
    port = free_port()
    process = ServiceProcess(
        "projector",
        [PROJECTOR_BIN, "run"],
        tmp_path,
        env=isolated.env(TAIFA_PROJECTOR_HEALTH_PORT=str(port), TAIFA_PROJECTOR_SESSION_TIMEOUT_MS="2000"),
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    await asyncio.to_thread(process.start, 60)
    try:
        d = Domain()
        await produce(isolated.bootstrap, isolated.topic_names, [d.registered(1), d.verified(2), d.created(3)])
        async with ReadSide(isolated.settings()) as side:
            await eventually(lambda: side.count("rm_smtp_credentials"), what="event applied by the process")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200

            async def lag_reported() -> bool:
                return "taifa_projector_lag{" in (await client.get("/metrics")).text

            await eventually(lag_reported, what="lag gauge after the batch's commit")
            metrics = (await client.get("/metrics")).text
            assert 'taifa_projector_events_applied_total{event_type="CredentialCreated"} 1.0' in metrics
            assert "taifa_projector_batch_apply_seconds_bucket" in metrics
            assert "taifa_projector_lag{" in metrics
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/readyz")).status_code == 405
        began = time.monotonic()
        await asyncio.to_thread(process.stop, 20)
        assert time.monotonic() - began < 10, "SIGTERM should stop the projector promptly"
        assert "Traceback" not in process.log_path.read_text()
    finally:
        await asyncio.to_thread(process.stop)
