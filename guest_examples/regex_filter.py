"""Keep records whose UTF-8 text matches a regular expression (parameter ``pattern``)."""

import re

import dataflare


@dataflare.init(params={"pattern": None})
def compile_pattern(params: dict[str, str]) -> re.Pattern[str]:
    return re.compile(params["pattern"])


@dataflare.filter
def matches(record: dataflare.Record, pattern: re.Pattern[str]) -> bool:
    return pattern.search(record.value.decode("utf-8", errors="replace")) is not None
