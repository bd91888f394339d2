"""Source and sink plugins: one loader for files, entry points and the built-ins, parameters
checked like a processor's, and one located line for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflare import ConfigurationError
from dataflare_host import Pipeline
from dataflare_host.cli._main import main
from dataflare_host.connectors import (
    ConnectorRegistry,
    FileSink,
    FileSource,
    GeneratorSource,
    Sink,
    Source,
    connector_class,
    load_connector_file,
    open_connector,
)

COUNTER = '''
import dataflare
from dataflare_host.connectors import Source, SourceBatch


class Counter(Source):
    PARAMS = {"count": None, "label": "n", "step": dataflare.OPTIONAL}

    def connect(self, position):
        self.next = 0 if position is None else position

    def read(self, max_records, timeout_s):
        if self.next >= int(self.params["count"]):
            return None
        self.next += 1
        return SourceBatch([dataflare.Record.from_text(f"{self.params['label']}{self.next}")],
                           self.next)
'''

LINES = '''
from dataflare_host.connectors import Sink


class Lines(Sink):
    PARAMS = {"path": None}

    def connect(self):
        pass

    def write(self, records):
        pass

    def flush(self):
        pass
'''


def _write(tmp_path: Path, sources: str, sinks: str) -> Path:
    (tmp_path / "counter.py").write_text(COUNTER)
    (tmp_path / "lines.py").write_text(LINES)
    file = tmp_path / "pipeline.yaml"
    file.write_text(f"sources:\n{sources}\nsinks:\n{sinks}\n")
    return file


SOURCE_OK = """  - id: counter
    type: plugin
    config:
      plugin_type: source
      plugin_path: counter.py
      params: {count: "3"}"""
SINK_OK = """  - id: out
    type: plugin
    config: {plugin_type: stdout}"""


def _validate(file: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["validate", str(file)])
    return result.exit_code, result.output.strip().splitlines()


def test_a_plugin_file_source_validates_and_runs(tmp_path: Path) -> None:
    file = _write(tmp_path, SOURCE_OK, SINK_OK)
    code, lines = _validate(file)
    assert code == 0, lines
    pipeline = Pipeline.from_file(file)
    try:
        assert dict(pipeline.sources[0].params) == {"count": "3", "label": "n"}
        summary = pipeline.run(handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert {s.stage: s.records_out for s in summary.stats}["counter"] == 3


@pytest.mark.parametrize(
    ("sources", "sinks", "where", "message"),
    [
        (SOURCE_OK.replace('count: "3"', 'count: "3", labl: x'), SINK_OK,
         r"pipeline\.yaml:7: sources\[0\]\.config\.params: ",
         r"source 'counter\.py' has no parameter 'labl' \(did you mean 'label'\?\); "
         r"it takes: count, label, step"),
        (SOURCE_OK.replace('params: {count: "3"}', "params: {}"), SINK_OK,
         r"pipeline\.yaml:7: sources\[0\]\.config\.params: ",
         r"source 'counter\.py' needs parameter 'count'"),
        (SOURCE_OK, "  - id: out\n    type: plugin\n    config: {plugin_path: lines.py}",
         r"pipeline\.yaml:11: sinks\[0\]\.config\.params: ",
         r"sink 'lines\.py' needs parameter 'path'"),
        (SOURCE_OK.replace("counter.py", "nowhere.py"), SINK_OK,
         r"pipeline\.yaml:6: sources\[0\]\.config\.plugin_path: ",
         r"file .*nowhere\.py does not exist"),
        (SOURCE_OK.replace("counter.py", "lines.py").replace('count: "3"', "path: x"), SINK_OK,
         r"pipeline\.yaml:6: sources\[0\]\.config\.plugin_path: ",
         r"source plugin .*lines\.py defines no source \(a subclass of "
         r"dataflare_host\.connectors\.Source\) \(it defines a sink: use it under sinks:\)"),
        (SOURCE_OK.replace("plugin_type: source", "plugin_type: file"), SINK_OK,
         r"pipeline\.yaml:5: sources\[0\]\.config\.plugin_type: ",
         r"with plugin_path: counter\.py, plugin_type must be source"),
        (SOURCE_OK.replace("plugin_path: counter.py", "plugin_path: counter.py\n"
                           "      plugin_name: file"), SINK_OK,
         r"pipeline\.yaml:4: sources\[0\]\.config: ",
         r"give exactly one of plugin_name or plugin_path \(got both\)"),
        ("  - id: x\n    type: plugin\n    config: {params: {}}", SINK_OK,
         r"pipeline\.yaml:4: sources\[0\]\.config\.plugin_type: ",
         r"required key missing"),
    ],
)
def test_mistakes_are_one_located_line(
    tmp_path: Path, sources: str, sinks: str, where: str, message: str
) -> None:
    code, lines = _validate(_write(tmp_path, sources, sinks))
    assert code == 2
    assert len(lines) == 1, lines
    assert re.fullmatch(f"error: .*{where}{message}.*", lines[0]), lines[0]


def test_a_plugin_that_fails_to_import_is_one_located_line(tmp_path: Path) -> None:
    file = _write(tmp_path, SOURCE_OK, SINK_OK)
    (tmp_path / "counter.py").write_text("import json\nraise RuntimeError('no config')\n")
    code, lines = _validate(file)
    assert (code, len(lines)) == (2, 1), lines
    assert "sources[0].config.plugin_path: source plugin" in lines[0]
    assert "failed to import: RuntimeError: no config" in lines[0]
    assert "Traceback" not in lines[0]


def test_built_ins_come_through_the_entry_points_and_the_same_check() -> None:
    registry = ConnectorRegistry.from_entry_points()
    assert registry.source("file") is FileSource
    assert registry.source("generator") is GeneratorSource
    assert registry.sink("file") is FileSink
    assert {"postgres", "redis"} <= set(registry.source_names())
    with pytest.raises(ConfigurationError, match=r"is <class .*FileSink'>, not a source"):
        registry.register_source("bad", FileSink)  # type: ignore[arg-type]


def test_a_registered_plugin_class_is_named_by_plugin_name(tmp_path: Path) -> None:
    """What an entry point gives: the class, used by plugin_name with its params checked."""
    counter = load_connector_file(_write(tmp_path, SOURCE_OK, SINK_OK).with_name("counter.py"),
                                  "source")
    registry = ConnectorRegistry()
    registry.register_source("counter", counter)
    registry.register_sink("stdout", load_connector_file(tmp_path / "lines.py", "sink"))
    file = tmp_path / "named.yaml"
    file.write_text(SOURCE_OK.join(["sources:\n", "\nsinks:\n"]).replace(
        "plugin_path: counter.py", "plugin_name: counter").replace('count: "3"', "count: x9")
        + "  - {id: out, type: plugin, config: {plugin_type: sink, plugin_name: stdout,"
        " params: {path: p}}}\n")
    pipeline = Pipeline.from_file(file, registry)
    try:
        assert type(pipeline.sources[0]).__name__ == "Counter"
        assert pipeline.sources[0].params["count"] == "x9"
    finally:
        pipeline.close()


def test_module_entry_points_find_the_one_class(tmp_path: Path) -> None:
    import types

    module = types.ModuleType("plugin_mod")
    exec(COUNTER, module.__dict__)
    found = connector_class(module, "source", "entry point x")
    assert issubclass(found, Source)
    assert found.__name__ == "Counter"
    with pytest.raises(ConfigurationError, match="entry point x defines no sink"):
        connector_class(module, "sink", "entry point x")


def test_open_connector_checks_params_like_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "lines.py").write_text(LINES)
    with pytest.raises(ConfigurationError, match="has no parameter 'pth' \\(did you mean 'path'"):
        open_connector(tmp_path / "lines.py", "sink", {"pth": "x"})
    sink = open_connector(tmp_path / "lines.py", "sink", {"path": "x"})
    assert isinstance(sink, Sink)
    assert dict(sink.params) == {"path": "x"}


def test_the_built_in_table_is_pyproject_s_entry_points() -> None:
    """BUILT_IN (what spares a run the scan) says what pyproject registers, name for name."""
    import tomllib

    from dataflare_host.connectors._registry import BUILT_IN

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]
    assert {group: declared[group] for group in BUILT_IN} == BUILT_IN


def test_a_built_in_name_needs_no_entry_point_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    scanned: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: str) -> importlib.metadata.EntryPoints:
        scanned.append(kwargs["group"])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    registry = ConnectorRegistry.from_entry_points()
    assert registry.source("file") is FileSource
    assert registry.sink("file") is FileSink
    assert scanned == []
    assert registry.source("no-such-connector") is None  # an unknown name scans, once
    assert scanned == ["dataflare.sources", "dataflare.sinks"]
    registry.sink_names()
    assert len(scanned) == 2


def test_a_registration_in_code_outlives_the_scan(tmp_path: Path) -> None:
    counter = load_connector_file(_write(tmp_path, SOURCE_OK, SINK_OK).with_name("counter.py"),
                                  "source")
    registry = ConnectorRegistry.from_entry_points()
    registry.register_source("redis", counter)
    assert registry.source("unknown") is None  # the scan ran
    assert registry.source("redis") is counter
