"""The design document's example (examples/design) end to end: real PostgreSQL -> native
json_filter -> WASM transform -> a real OpenSearch index."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from support.servers import OpenSearchServer, PostgresServer

from dataflare_host.cli._main import main

DESIGN = Path(__file__).resolve().parents[2] / "examples" / "design"


def test_every_active_row_becomes_its_transformed_document(
    postgres_server: PostgresServer, opensearch_server: OpenSearchServer, tmp_path: Path
) -> None:
    """Active rows only, reshaped by user_schema, ids = user_id; a second run changes nothing."""
    dsn = postgres_server.create_database("design")
    postgres_server.execute(
        dsn, "CREATE TABLE users (id int PRIMARY KEY, name text, email text, status text)"
    )
    postgres_server.execute(
        dsn,
        "INSERT INTO users SELECT n, 'user ' || n, 'U' || n || '@X.ORG', "
        "CASE WHEN n % 3 = 0 THEN 'inactive' ELSE 'active' END FROM generate_series(1, 300) n",
    )
    folder = tmp_path / "design"
    shutil.copytree(DESIGN, folder, ignore=shutil.ignore_patterns("out"))
    file = folder / "pipeline.yaml"
    text = file.read_text()
    index = f"logs-{tmp_path.name.lower()[-20:].strip('_-')}"
    assert not (folder / "plugins" / "transform.wasm").exists()
    built = CliRunner().invoke(
        main,
        [
            "build",
            str(folder / "plugins" / "transform.py"),
            "-o",
            str(folder / "plugins" / "transform.wasm"),
        ],
    )
    assert built.exit_code == 0, built.output
    settings = dict(part.split("=", 1) for part in dsn.split())
    for old, new in (
        (
            'host: "localhost", port: 5432, database: "mydb"',
            f'host: "{settings["host"]}", port: {settings["port"]}, '
            f'database: "{settings["dbname"]}"',
        ),
        ("http://localhost:9200", opensearch_server.url),
        ('index: "logs"', f'index: "{index}"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    file.write_text(text)
    result = CliRunner().invoke(main, ["run", "--quiet", str(file)])
    assert result.exit_code == 0, result.output
    expected = {
        str(n): {
            "user_id": n,
            "name": f"user {n}",
            "email": f"u{n}@x.org",
            "status": "active",
            "schema": "user_schema",
        }
        for n in range(1, 301)
        if n % 3 != 0
    }
    assert opensearch_server.documents(index) == expected
    result = CliRunner().invoke(main, ["run", "--quiet", str(file)])
    assert result.exit_code == 0, result.output
    assert opensearch_server.count(index) == len(expected)
