"""The design document's config form: ``plugin_type: source|sink`` + ``plugin_name``,
``plugin_type: transform``, and one located line for each mistake in it.

Each bad case is a small edit of one valid design-form pipeline; the offending
line carries ``# HERE`` so the expected line comes from the case's own text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.output import line_of

from dataflare import ConfigurationError
from dataflare_host.cli._main import main
from dataflare_host.pipeline import Pipeline
from dataflare_host.pipeline._design_names import (
    DESIGN_PROCESSOR_TYPES,
    PROCESSOR_KINDS,
    processor_kind,
)

DESIGN_PLUGINS = Path(__file__).resolve().parents[2] / "examples" / "design" / "plugins"

VALID = """\
name: design
processors:
  - id: "user_filter"
    type: "plugin"
    config:
      plugin_type: "filter"
      plugin_name: "json_filter"
      params: {field: "status", value: "active"}
  - id: "data_transform"
    type: "plugin"
    config:
      plugin_type: "transform"
      plugin_path: "plugins/transform.py"
      params: {format: "json", schema: "user_schema"}
sources:
  - id: "rows"
    type: "plugin"
    config:
      plugin_type: "source"
      plugin_name: "file"
      connection: {path: "data/users.jsonl", key_field: "id"}
sinks:
  - id: "docs"
    type: "plugin"
    config:
      plugin_type: "sink"
      plugin_name: "file"
      connection: {path: "out/docs.jsonl"}
"""

ROWS = [
    {"id": 1, "name": "Ann", "email": "ANN@X.ORG", "status": "active"},
    {"id": 2, "name": "Bob", "email": "bob@x.org", "status": "inactive"},
    {"id": 3, "name": "Cy", "email": "Cy@X.org", "status": "active"},
]


def edit(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with the design example's plugins and three user rows."""
    shutil.copytree(DESIGN_PLUGINS, tmp_path / "plugins")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return tmp_path


def test_the_design_form_runs_filter_then_transform(project: Path) -> None:
    """plugin_type source/sink + plugin_name, and transform as a map, run end to end."""
    file = project / "design.yaml"
    file.write_text(VALID)
    pipeline = Pipeline.from_file(file)
    try:
        summary = pipeline.run(handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    docs = [json.loads(line) for line in (project / "out" / "docs.jsonl").read_text().splitlines()]
    assert docs == [
        {"user_id": 1, "name": "Ann", "email": "ann@x.org", "status": "active",
         "schema": "user_schema"},
        {"user_id": 3, "name": "Cy", "email": "cy@x.org", "status": "active",
         "schema": "user_schema"},
    ]
    # Stages are labelled by connector and kind, not by the family word.
    kinds = {stats.stage: stats.kind for stats in summary.stats}
    assert kinds == {"rows": "file", "user_filter": "filter", "data_transform": "map",
                     "docs": "file"}


def test_the_short_form_and_the_design_form_mean_the_same(project: Path) -> None:
    """``plugin_type: file`` alone is the short form of source/sink + plugin_name: file."""
    short = VALID.replace(
        '      plugin_type: "source"\n      plugin_name: "file"\n', "      plugin_type: file\n"
    ).replace('      plugin_type: "sink"\n      plugin_name: "file"\n', "      plugin_type: file\n")
    assert "plugin_name: \"file\"" not in short
    file = project / "short.yaml"
    file.write_text(short)
    pipeline = Pipeline.from_file(file)
    try:
        assert pipeline.run(handle_signals=False).status == "completed"
    finally:
        pipeline.close()
    assert len((project / "out" / "docs.jsonl").read_text().splitlines()) == 2


def test_the_mapping_table_names_only_real_kinds() -> None:
    """Every design name maps to an engine kind, and every kind maps to itself."""
    assert DESIGN_PROCESSOR_TYPES == {"transform": "map"}
    for kind in PROCESSOR_KINDS:
        assert processor_kind(kind) == kind
    assert processor_kind("source") is None


CASES = {
    "unknown_plugin_name_suggests": (
        edit('      plugin_name: "file"\n      connection: {path: "data',
             '      plugin_name: "postgress"  # HERE\n      connection: {path: "data'),
        "sources[0].config.plugin_name",
        "no source connector named 'postgress' (did you mean 'postgres'?); installed: ",
    ),
    "unknown_sink_plugin_name": (
        edit('      plugin_name: "file"\n      connection: {path: "out',
             '      plugin_name: "elasticsearh"  # HERE\n      connection: {path: "out'),
        "sinks[0].config.plugin_name",
        "no sink connector named 'elasticsearh' (did you mean 'elasticsearch'?)",
    ),
    "source_plugin_type_on_a_processor": (
        edit('      plugin_type: "transform"\n', '      plugin_type: "source"  # HERE\n'),
        "processors[1].config.plugin_type",
        "is source, which is a connector, not a processor; move this entry under sources:",
    ),
    "sink_plugin_type_under_sources": (
        edit('      plugin_type: "source"\n', '      plugin_type: "sink"  # HERE\n'),
        "sources[0].config.plugin_type",
        "is sink, but this entry is a source (under sources:); set plugin_type: source",
    ),
    "family_without_plugin_name": (
        edit('      plugin_type: "sink"\n      plugin_name: "file"\n',
             '      plugin_type: "sink"  # HERE\n'),
        "sinks[0].config.plugin_type",
        "is sink, so plugin_name: must name the sink connector",
    ),
    "processor_type_under_sinks": (
        edit('      plugin_type: "sink"\n', '      plugin_type: "filter"  # HERE\n'),
        "sinks[0].config.plugin_type",
        "is filter, a processor type, but this entry is a sink (under sinks: (or dead_letter:)",
    ),
    "short_form_with_plugin_name": (
        edit('      plugin_type: "source"\n', '      plugin_type: "file"  # HERE\n'),
        "sources[0].config.plugin_type",
        "with plugin_name: file, plugin_type must be source (the design's form)",
    ),
    "transform_on_a_filter_plugin": (
        edit('      plugin_path: "plugins/transform.py"\n      params: {format: "json", '
             'schema: "user_schema"}\n', '      plugin_path: "plugins/json_filter.py"\n'),
        "processors[1].config.plugin_type",
        "is transform (= map) but ",
    ),
    "design_processor_type_typo": (
        edit('      plugin_type: "transform"\n', '      plugin_type: "transfrom"  # HERE\n'),
        "processors[1].config.plugin_type",
        "'transfrom' is not one of: filter, map, filter_map, array_map, aggregate "
        "(did you mean 'transform'?)",
    ),
}


def validate_error_line(file: Path) -> str:
    """``dataflare validate file`` fails (exit code 2) with one line: that line."""
    result = CliRunner().invoke(main, ["validate", str(file)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_design_config_is_one_located_line(project: Path, name: str) -> None:
    """``dataflare validate`` prints one line: file, line, the key as written, what to do."""
    text, path, message = CASES[name]
    file = project / f"{name}.yaml"
    file.write_text(text)
    line = line_of(text, "# HERE") if "# HERE" in text else line_of(text, "\"transform\"")
    error = validate_error_line(file)
    assert error.startswith(f"error: {file}:{line}: {path}: "), error
    assert message in error, error
    with pytest.raises(ConfigurationError) as raised:
        Pipeline.from_file(file)
    assert error == f"error: {raised.value}"


ES_SINK = (
    '      plugin_type: "sink"\n      plugin_name: "file"\n'
    '      connection: {path: "out/docs.jsonl"}\n'
)

ES_CASES = {
    "missing_index": (
        '      plugin_type: "sink"\n      plugin_name: "elasticsearch"\n'
        '      connection: {url: "http://localhost:9200"}  # HERE\n',
        "sinks[0].config.connection.index", "required key missing",
    ),
    "bad_index_template": (
        '      plugin_type: "sink"\n      plugin_name: "elasticsearch"\n      connection:\n'
        '        url: "http://localhost:9200"\n        index: "logs-{level}"  # HERE\n',
        "sinks[0].config.connection.index",
        "index 'logs-{level}' has {level}; a placeholder is {field:NAME}",
    ),
    "url_that_is_not_http_hides_the_password": (
        '      plugin_type: "sink"\n      plugin_name: "elasticsearch"\n      connection:\n'
        '        url: "ftp://me:hunter2@host"  # HERE\n        index: logs\n',
        "sinks[0].config.connection.url", "url 'ftp://***@host' must be http(s)://host:port",
    ),
}


@pytest.mark.parametrize("name", sorted(ES_CASES))
def test_a_bad_elasticsearch_sink_is_one_located_line(project: Path, name: str) -> None:
    """Elasticsearch settings are checked by validate, located, credentials hidden."""
    replacement, path, message = ES_CASES[name]
    text = edit(ES_SINK, replacement)
    file = project / f"{name}.yaml"
    file.write_text(text)
    error = validate_error_line(file)
    assert error.startswith(f"error: {file}:{line_of(text, '# HERE')}: {path}: "), error
    assert message in error, error
    assert "hunter2" not in error


def test_a_valid_elasticsearch_sink_validates_without_a_server(project: Path) -> None:
    """validate checks settings only: no connection is made (the server may be down)."""
    text = edit(ES_SINK, '      plugin_type: "sink"\n      plugin_name: "elasticsearch"\n'
                         '      connection: {url: "http://127.0.0.1:9", index: "logs-{date}"}\n')
    file = project / "es.yaml"
    file.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(file)])
    assert result.exit_code == 0, result.output
