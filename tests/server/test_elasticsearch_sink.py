"""The Elasticsearch sink against a real OpenSearch 2.19 node (started by ``opensearch_server``).

Covers bulk indexing with idempotent ids (replays overwrite), ids from a field,
templated index names, per-item refusals routed to the dead letter with the
server's reason, a server that is down (one line, then a resume), and that
credentials never reach a message.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.servers import OpenSearchServer, free_port

from dataflare import PluginIOError, Record
from dataflare_host.cli._main import main
from dataflare_host.connectors import ElasticsearchSink, ElasticsearchSinkConfig


def fresh_index(server: OpenSearchServer, mapping: dict[str, object] | None = None) -> str:
    """A new index name; created with one shard, no replica and ``mapping`` when given."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    body: dict[str, object] = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    if mapping is not None:
        body["mappings"] = {"properties": mapping}
    server.request("PUT", f"/{name}", body)
    return name


def sink(server_url: str, index: str, **settings: object) -> ElasticsearchSink:
    config = ElasticsearchSinkConfig(url=server_url, index=index, **settings)  # type: ignore[arg-type]
    return ElasticsearchSink(config, {})


def keyed(key: str, document: dict[str, object], timestamp: int | None = None) -> Record:
    return Record(json.dumps(document).encode(), key.encode(), timestamp)


def test_bulk_indexes_by_key_and_a_replay_overwrites(opensearch_server: OpenSearchServer) -> None:
    """Documents get the record key as id; writing the same keys again leaves one each."""
    index = fresh_index(opensearch_server)
    records = [keyed(f"k{n}", {"n": n, "text": f"row {n}"}) for n in range(1_200)]
    with sink(opensearch_server.url, index, batch_size=500) as es:
        es.connect()
        es.write(records)
        es.flush()
        assert es.take_rejected() == []
        # The replay after a crash: same keys, newer bodies.
        es.write([keyed(f"k{n}", {"n": n, "text": "again"}) for n in range(100)])
        es.flush()
    documents = opensearch_server.documents(index)
    assert len(documents) == 1_200
    assert documents["k7"] == {"n": 7, "text": "again"}
    assert documents["k999"] == {"n": 999, "text": "row 999"}


def test_id_field_and_templated_index(opensearch_server: OpenSearchServer) -> None:
    """``id_field`` names the id; ``{field:...}`` and ``{date:...}`` name the index per record."""
    prefix = f"tpl-{uuid.uuid4().hex[:8]}"
    day = 1_700_000_000_000  # 2023-11-14 UTC
    records = [
        Record(json.dumps({"uid": "a1", "svc": "web"}).encode(), None, day),
        Record(json.dumps({"uid": "b2", "svc": "db"}).encode(), None, day),
        Record(json.dumps({"uid": "c3"}).encode(), None, day),  # no svc: refused, not guessed
    ]
    with sink(opensearch_server.url, prefix + "-{field:svc}-{date:%Y.%m.%d}",
              id_field="uid") as es:
        es.connect()
        es.write(records)
        es.flush()
        rejected = es.take_rejected()
    assert opensearch_server.documents(f"{prefix}-web-2023.11.14") == {"a1": {"uid": "a1",
                                                                              "svc": "web"}}
    assert list(opensearch_server.documents(f"{prefix}-db-2023.11.14")) == ["b2"]
    assert [r.record for r in rejected] == [records[2]]
    assert "no field 'svc'" in rejected[0].reason


def pipeline_file(
    folder: Path, url: str, index: str, rows: list[dict[str, object]], *,
    dead_letter: bool = True, extra: str = "",
) -> Path:
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    text = f"""\
name: es-test
checkpoint: {{path: es.checkpoint.json, interval_ms: 50}}
sources:
  - id: rows
    type: plugin
    config:
      plugin_type: source
      plugin_name: file
      connection: {{path: rows.jsonl, key_field: id}}
sinks:
  - id: es
    type: plugin
    config:
      plugin_type: sink
      plugin_name: elasticsearch
      connection: {{url: "{url}", index: {index}, max_retries: 1, retry_initial_ms: 10{extra}}}
"""
    if dead_letter:
        text += """\
dead_letter:
  id: rejects
  type: plugin
  config: {plugin_type: sink, plugin_name: file, connection: {path: rejects.jsonl}}
"""
    file = folder / "pipeline.yaml"
    file.write_text(text)
    return file


def run(file: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", "--quiet", str(file)])
    return result.exit_code, result.output


def test_mapping_conflicts_are_dead_lettered_with_the_servers_reason(
    opensearch_server: OpenSearchServer, tmp_path: Path
) -> None:
    """Exactly the refused records reach the dead letter, each with the server's reason."""
    index = fresh_index(opensearch_server, {"amount": {"type": "long"}})
    rows = [{"id": n, "amount": "lots" if n in (3, 8) else n} for n in range(10)]
    file = pipeline_file(tmp_path, opensearch_server.url, index, rows)
    code, output = run(file)
    assert code == 0, output
    assert sorted(opensearch_server.documents(index)) == sorted(
        str(n) for n in range(10) if n not in (3, 8)
    )
    dead = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [json.loads(d["record"]["value"]) for d in dead] == [rows[3], rows[8]]
    for entry in dead:
        assert entry["stage"] == "es"
        assert "400 mapper_parsing_exception: failed to parse field [amount]" in (
            entry["error"]["reason"]
        )


def test_a_refusal_without_dead_letter_fails_the_run_in_one_line(
    opensearch_server: OpenSearchServer, tmp_path: Path
) -> None:
    """With no dead_letter, a refused record stops the run, names the sink, and is not lost."""
    index = fresh_index(opensearch_server, {"amount": {"type": "long"}})
    rows = [{"id": 1, "amount": 1}, {"id": 2, "amount": "x"}]
    file = pipeline_file(tmp_path, opensearch_server.url, index, rows, dead_letter=False)
    code, output = run(file)
    assert code == 1
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    first = "sink 'es' refused 1 record(s), the first (record rows.jsonl line 2, key '2'"
    assert first in errors[0]
    assert "mapper_parsing_exception" in errors[0]
    assert "add a dead_letter: sink" in errors[0]
    assert not (tmp_path / "es.checkpoint.json").exists()


def test_a_server_that_is_down_fails_in_one_line_then_the_run_resumes(
    opensearch_server: OpenSearchServer, tmp_path: Path
) -> None:
    """Connection refused: one line, exit 1, credentials hidden; back up: every row indexed."""
    index = fresh_index(opensearch_server)
    rows = [{"id": n, "v": n} for n in range(50)]
    down = f"http://elastic:s3cret-pw@127.0.0.1:{free_port()}"
    file = pipeline_file(tmp_path, down, index, rows, extra=", password: other-s3cret, username: u")
    code, output = run(file)
    assert code == 1
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "ConnectError" in errors[0], errors[0]
    assert "gave up after 2 attempts" in errors[0], errors[0]
    assert "s3cret" not in output
    file.write_text(file.read_text().replace(down, opensearch_server.url))
    code, output = run(file)
    assert code == 0, output
    assert opensearch_server.documents(index) == {str(n): {"id": n, "v": n} for n in range(50)}


def test_sink_errors_never_show_credentials(opensearch_server: OpenSearchServer) -> None:
    """The URL's password, the password and the api key stay out of messages and reprs."""
    config = ElasticsearchSinkConfig(
        url=f"http://bob:pw-in-url@127.0.0.1:{free_port()}", index="x", max_retries=0,
        api_key="key-secret",
    )
    assert "pw-in-url" not in repr(config)
    assert "key-secret" not in repr(config)
    es = ElasticsearchSink(config, {})
    with pytest.raises(PluginIOError) as raised:
        es.connect()
    es.close()
    assert "pw-in-url" not in str(raised.value)
    assert "key-secret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)
