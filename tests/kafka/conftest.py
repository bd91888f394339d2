"""The session's Kafka broker (see ``kafka_broker.py``): started once for every test here,
stopped (SIGTERM, waited for) at the end."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_broker import KafkaBroker, build


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A real Kafka 4.1 broker on free 127.0.0.1 ports, its data in a temporary directory."""
    build()
    directory = Path(tempfile.mkdtemp(prefix="dataflare-kafka-"))
    broker = KafkaBroker(directory)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
