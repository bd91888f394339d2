"""Add ``"tag": <param tag>`` to each JSON record.

``slow_while`` (a path, optional): while that file exists each record costs two
milliseconds more, so a run lasts as long as a test needs it to (the SIGKILL tests
hold it slow until their last kill, then remove the file).
"""

import json
import os
import time

import dataflare


@dataflare.map(params={"tag": "tagged", "slow_while": ""})
def tag(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    if params["slow_while"] and os.path.exists(params["slow_while"]):
        time.sleep(0.002)
    document = record.json()
    document["tag"] = params["tag"]
    return record.evolve(value=json.dumps(document, separators=(",", ":")))
