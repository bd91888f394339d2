"""Pipeline YAML validation: each bad config gives one ``file:line: yaml.path: message`` error.

Every case is a small edit of one valid pipeline. The offending line carries a
``# HERE`` comment, so the expected line number is read from the case's own
text, not from the implementation. Each case runs through ``dataflare validate``
(CliRunner on ``host._cli.main``; a few also through the installed console
script) and through ``Pipeline.from_file``, which must raise ConfigurationError
with the very text the CLI printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import attrs
import pytest
from support.cli import cli_outcome
from support.output import line_of
from support.paths import EXAMPLES

from dataflare import ConfigurationError
from dataflare_host.connectors import FileSourceConfig
from dataflare_host.pipeline._config import PipelineConfig, ProcessorConfig
from dataflare_host.pipeline._runner import Pipeline

SOURCE_ENTRY = """\
  - id: events
    type: plugin
    config:
      plugin_type: file
      connection:
        path: data/events.jsonl
"""

VALID = """\
name: demo
sources:
""" + SOURCE_ENTRY + """\
processors:
  - id: active
    type: plugin
    config:
      plugin_type: filter
      plugin_path: plugins/json_field_filter.py
      params: {field: status, value: active}
sinks:
  - id: out
    type: plugin
    config:
      plugin_type: file
      connection:
        path: out/active.jsonl
"""


MARK = "# HERE"


class Case(NamedTuple):
    text: str
    path: str | None
    """The YAML path the error names (None: the file is not YAML at all)."""
    message: str
    """A fragment the message after the path must hold."""


def edit(old: str, new: str, text: str = VALID) -> str:
    """``text`` with its one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def known_keys(cls: type) -> str:
    """The keys a section accepts (its attrs fields), sorted, as the error lists them."""
    return ", ".join(sorted(attrs.fields_dict(cls)))


PROCESSOR_PARAMS = "      params: {field: status, value: active}\n"
PROCESSOR_HEAD = "  - id: active\n    type: plugin\n    config:\n"
PROCESSOR_CONFIG_MARKED = edit(PROCESSOR_HEAD, PROCESSOR_HEAD.replace("config:", "config:  # HERE"))

DEAD_LETTER_REUSING_OUT = (
    edit(PROCESSOR_PARAMS, PROCESSOR_PARAMS + "      on_error: dead_letter\n")
    + "dead_letter:\n  id: out  # HERE\n  type: plugin\n  config:\n    plugin_type: file\n"
    "    connection: {path: out/dead.jsonl}\n"
)

CASES: dict[str, Case] = {
    "malformed_yaml": Case(
        edit("plugin_type: filter\n", "plugin_type: filter: map  # HERE\n"),
        None, "mapping values are not allowed here",
    ),
    "duplicate_top_level_key": Case(
        edit("name: demo\n", "name: demo\nname: again  # HERE\n"),
        "name", "duplicate key (first given at line 1)",
    ),
    "duplicate_nested_key": Case(
        edit("        path: out/active.jsonl\n",
             "        path: out/active.jsonl\n        path: out/other.jsonl  # HERE\n"),
        "sinks[0].config.connection.path",
        f"duplicate key (first given at line {line_of(VALID, 'out/active.jsonl')})",
    ),
    "unknown_top_level_key": Case(
        VALID + "colour: blue  # HERE\n",
        "colour", f"unknown key 'colour' (known keys: {known_keys(PipelineConfig)})",
    ),
    "unknown_processor_config_key": Case(
        edit(PROCESSOR_PARAMS, PROCESSOR_PARAMS + "      on_eror: skip  # HERE\n"),
        "processors[0].config.on_eror",
        "unknown key 'on_eror' (did you mean 'on_error'?) "
        f"(known keys: {known_keys(ProcessorConfig)})",
    ),
    "wrong_plugin_type_literal": Case(
        edit("plugin_type: filter\n", "plugin_type: filtr  # HERE\n"),
        "processors[0].config.plugin_type",
        "'filtr' is not one of: filter, map, filter_map, array_map, aggregate "
        "(did you mean 'filter'?)",
    ),
    "wrong_on_error_literal": Case(
        edit(PROCESSOR_PARAMS, PROCESSOR_PARAMS + "      on_error: skipp  # HERE\n"),
        "processors[0].config.on_error",
        "'skipp' is not one of: fail, skip, dead_letter (did you mean 'skip'?)",
    ),
    "plugin_kind_mismatch": Case(
        edit("plugin_type: filter\n", "plugin_type: map  # HERE\n"),
        "processors[0].config.plugin_type",
        "json_field_filter.py holds a filter plugin ('field_equals'); set plugin_type: filter",
    ),
    "missing_plugin_file": Case(
        edit("plugins/json_field_filter.py", "plugins/no_such_plugin.py  # HERE"),
        "processors[0].config.plugin_path", "no_such_plugin.py does not exist",
    ),
    "missing_native_plugin_name": Case(
        edit("      plugin_path: plugins/json_field_filter.py\n",
             "      plugin_name: no_such_plugin\n", PROCESSOR_CONFIG_MARKED),
        "processors[0].config", "no native plugin named 'no_such_plugin'",
    ),
    "wasm_path_without_plugin_source_wasm": Case(
        edit("plugins/json_field_filter.py", "plugins/json_field_filter.wasm  # HERE"),
        "processors[0].config.plugin_path",
        "'plugins/json_field_filter.wasm' is not a .py file or a package folder; for a "
        "component set plugin_source: wasm",
    ),
    "plugin_source_wasm_with_wrong_suffix": Case(
        edit("      plugin_path: plugins/json_field_filter.py\n",
             "      plugin_source: wasm\n"
             "      plugin_path: plugins/json_field_filter.txt  # HERE\n"),
        "processors[0].config.plugin_path",
        "plugin_source: wasm needs plugin_path: a .wasm component, or a .py plugin",
    ),
    "plugin_file_with_syntax_error": Case(
        edit("plugins/json_field_filter.py", "plugins/broken.py", PROCESSOR_CONFIG_MARKED),
        "processors[0].config", "broken.py has a syntax error at line 3",
    ),
    "unknown_sink_connector": Case(
        edit("      plugin_type: file\n      connection:\n        path: out/",
             "      plugin_type: fiel  # HERE\n      connection:\n        path: out/"),
        "sinks[0].config.plugin_type",
        "no sink connector named 'fiel'; installed: elasticsearch, file, ",
    ),
    "sink_connector_used_as_source": Case(
        edit(SOURCE_ENTRY, "  - id: events\n    type: plugin\n    config:\n"
                           "      plugin_type: stdout  # HERE\n"),
        "sources[0].config.plugin_type", "no source connector named 'stdout'",
    ),
    "unknown_connection_key": Case(
        edit("        path: data/events.jsonl\n",
             "        path: data/events.jsonl\n        colour: red  # HERE\n"),
        "sources[0].config.connection.colour",
        f"unknown key 'colour' (known keys: {known_keys(FileSourceConfig)})",
    ),
    "connection_setting_of_wrong_type": Case(
        edit(SOURCE_ENTRY, "  - id: events\n    type: plugin\n    config:\n"
                           "      plugin_type: generator\n      connection:\n"
                           "        count: ten  # HERE\n"),
        "sources[0].config.connection.count", "expected an integer, got 'ten'",
    ),
    "unknown_param_of_a_plugin_declaring_params": Case(
        edit("{field: status, value: active}", "{field: status, value: active, fild: x}  # HERE"),
        "processors[0].config.params",
        "has no parameter 'fild' (did you mean 'field'?); it takes: field, value",
    ),
    "missing_required_param": Case(
        edit(PROCESSOR_PARAMS, "      params: {}  # HERE\n",
             edit("plugins/json_field_filter.py", "plugins/regex_filter.py")),
        "processors[0].config.params", "needs parameter 'pattern'",
    ),
    "param_that_is_not_text": Case(
        edit("value: active}", "value: {nested: 1}}  # HERE"),
        "processors[0].config.params.value", "expected text, got dict",
    ),
    "duplicate_stage_ids": Case(
        edit("  - id: out\n", "  - id: active  # HERE\n"),
        "sinks[0].id",
        f"id 'active' is already used at line {line_of(VALID, '- id: active')}; ids must be unique",
    ),
    "dead_letter_id_reusing_a_sink_id": Case(
        DEAD_LETTER_REUSING_OUT,
        "dead_letter.id",
        # the sink's line in the edited file (the on_error line moved it down one)
        f"id 'out' is already used at line {line_of(DEAD_LETTER_REUSING_OUT, '- id: out')}; "
        "ids must be unique",
    ),
    "dead_letter_policy_without_dead_letter_sink": Case(
        edit(PROCESSOR_PARAMS, PROCESSOR_PARAMS + "      on_error: dead_letter  # HERE\n"),
        "processors[0].config.on_error",
        "is dead_letter but the pipeline has no dead_letter: sink; add one",
    ),
    "batch_size_zero": Case(
        VALID + "batch:\n  size: 0  # HERE\n",
        "batch.size", "must be from 1 to 1,000,000, got 0",
    ),
    "bool_where_an_integer_belongs": Case(
        VALID + "batch:\n  linger_ms: true  # HERE\n",
        "batch.linger_ms", "expected an integer, got True",
    ),
    "bool_where_a_float_belongs": Case(
        edit(PROCESSOR_PARAMS, PROCESSOR_PARAMS + "      time_limit_s: yes  # HERE\n"),
        "processors[0].config.time_limit_s", "expected a number, got True",
    ),
    "quoted_number_where_an_integer_belongs": Case(
        VALID + "batch:\n  size: '10'  # HERE\n",
        "batch.size", "expected an integer, got '10'",
    ),
    "empty_sources": Case(
        edit(SOURCE_ENTRY, "", edit("sources:\n", "sources: []  # HERE\n")),
        "sources", "needs at least one source",
    ),
    "no_sources_key": Case(
        "name: demo  # HERE\n" + VALID.split("\n", 1)[1].replace("sources:\n" + SOURCE_ENTRY, ""),
        "(top level)", "missing sources: (at least one entry)",
    ),
    "source_entry_that_is_not_a_mapping": Case(
        edit(SOURCE_ENTRY, "  - just-a-name  # HERE\n"),
        "sources[0]", "expected a mapping",
    ),
    "source_file_that_does_not_exist": Case(
        edit("path: data/events.jsonl", "path: data/no_such_file.jsonl  # HERE"),
        "sources[0].config.connection.path", "no_such_file.jsonl",
    ),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with the plugins and data the VALID pipeline names."""
    (tmp_path / "plugins").mkdir()
    for name in ("json_field_filter.py", "regex_filter.py"):
        shutil.copy(EXAMPLES / name, tmp_path / "plugins" / name)
    (tmp_path / "plugins" / "broken.py").write_text(
        "import dataflare\n@dataflare.map\ndef broken(record)\n    return record\n"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.jsonl").write_text('{"status":"active"}\n')
    return tmp_path


def expected_prefix(file: Path, case: Case) -> str:
    line = line_of(case.text, MARK) if MARK in case.text else 1
    where = "invalid YAML" if case.path is None else case.path
    return f"error: {file}:{line}: {where}: "


def validate_with_clirunner(file: Path) -> tuple[int, str, str]:
    return cli_outcome("validate", str(file))


def validate_with_subprocess(file: Path) -> tuple[int, str, str]:
    exe = Path(sys.executable).parent / "dataflare"
    done = subprocess.run([str(exe), "validate", str(file)], capture_output=True, text=True,
                          timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_the_case_table_is_large_enough() -> None:
    """A dozen kinds of bad config at least: a shrinking table would hide lost coverage."""
    assert len(CASES) >= 12


def test_every_case_marks_its_line_once() -> None:
    """Each case's text holds exactly one ``# HERE`` (or none when line 1 is meant)."""
    for name, case in CASES.items():
        assert case.text.count(MARK) <= 1, name


def test_the_valid_pipeline_validates(project: Path) -> None:
    """The unedited pipeline passes ``dataflare validate`` with exit 0 and a summary line."""
    file = project / "pipeline.yaml"
    file.write_text(VALID)
    code, stdout, stderr = validate_with_clirunner(file)
    assert (code, stderr) == (0, "")
    assert stdout == f"{file}: ok (1 source(s), 1 processor(s), 1 sink(s))\n"
    Pipeline.from_file(file).close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_gives_one_located_error(project: Path, name: str) -> None:
    """``validate`` exits 2 with one ``error: file:line: path: message`` line; from_file agrees."""
    case = CASES[name]
    file = project / f"{name}.yaml"
    file.write_text(case.text)
    code, stdout, stderr = validate_with_clirunner(file)
    assert code == 2, (stdout, stderr)
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    prefix = expected_prefix(file, case)
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert case.message in lines[0][len(prefix):], lines[0]
    with pytest.raises(ConfigurationError) as raised:
        Pipeline.from_file(file)
    assert f"error: {raised.value}" == lines[0]


@pytest.mark.parametrize("name", [
    "malformed_yaml", "unknown_processor_config_key", "plugin_kind_mismatch",
    "connection_setting_of_wrong_type", "duplicate_stage_ids",
])
def test_bad_config_through_the_console_script(project: Path, name: str) -> None:
    """The installed ``dataflare validate`` prints the same single line and exits 2."""
    case = CASES[name]
    file = project / f"{name}.yaml"
    file.write_text(case.text)
    code, stdout, stderr = validate_with_subprocess(file)
    assert (code, stdout) == (2, ""), stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    prefix = expected_prefix(file, case)
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert case.message in lines[0], lines[0]


@pytest.mark.parametrize(("typo", "meant"), [
    ("filtr", "filter"), ("flter", "filter"), ("filter-map", "filter_map"),
    ("filtermap", "filter_map"), ("arraymap", "array_map"), ("agregate", "aggregate"),
])
def test_plugin_type_typo_suggests_the_closest_kind(project: Path, typo: str, meant: str) -> None:
    """A near-miss plugin_type names the kind it is closest to in its "did you mean"."""
    file = project / "typo.yaml"
    file.write_text(edit("plugin_type: filter\n", f"plugin_type: {typo}\n"))
    with pytest.raises(ConfigurationError) as raised:
        Pipeline.from_file(file)
    assert str(raised.value).endswith(f"(did you mean {meant!r}?)"), str(raised.value)


def test_a_misspelt_connection_key_is_reported_as_unknown_not_as_a_missing_one(
    tmp_path: Path,
) -> None:
    """`pth:` for `path:` names the key the user wrote, with a suggestion."""
    file = tmp_path / "p.yaml"
    file.write_text(
        "sources:\n  - {id: in, type: plugin, config: {plugin_type: generator}}\n"
        "sinks:\n  - {id: out, type: plugin, config: {plugin_type: file,"
        " connection: {pth: x.jsonl}}}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        Pipeline.from_file(file).close()
    assert "sinks[0].config.connection.pth: unknown key 'pth' (did you mean 'path'?)" in str(
        caught.value
    )
