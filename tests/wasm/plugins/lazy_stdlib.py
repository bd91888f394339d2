# ruff: noqa: E501, B028, BLE001 - a table reads best one row per line; every failure is the result
"""A table of stdlib functions, many of which import a module lazily (on first call).

The guest has no filesystem at run time, so such a module must be in the
component's snapshot: tests/wasm/test_lazy_stdlib.py runs every row natively and
as WASM and wants identical outputs. Left out on purpose: rows whose output
differs between CPython 3.11 (host) and 3.14 (guest) by design (reprs, new
methods), and the bz2 codec (the guest has no _bz2 C module).
"""
import array
import ast
import base64
import binascii
import bisect
import cmath
import codecs
import collections
import contextlib
import copy
import csv
import dataclasses
import datetime
import decimal
import difflib
import email
import email.utils
import enum
import fnmatch
import fractions
import functools
import gzip
import hashlib
import hmac
import html
import inspect
import ipaddress
import itertools
import json
import locale
import logging
import math
import mimetypes
import operator
import os
import pickle
import pprint
import quopri
import random
import re
import secrets
import shlex
import statistics
import string
import struct
import textwrap
import time
import traceback
import unicodedata
import urllib.parse
import uuid
import warnings
import xml.etree.ElementTree
import zlib

import dataflare


def _warned() -> list[str]:
    # Recorded, not shown: pytest turns warnings into errors natively.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("careful")
    return [str(w.message) for w in caught]


CASES = {
    "strptime": lambda: datetime.datetime.strptime("2024-03-05 10:11:12", "%Y-%m-%d %H:%M:%S").isoformat(),
    "time_strptime": lambda: tuple(time.strptime("05 Mar 2024", "%d %b %Y"))[:6],
    "strftime": lambda: datetime.datetime(2024, 3, 5).strftime("%A %d %B %Y %j"),
    "fromisoformat": lambda: datetime.datetime.fromisoformat("2024-03-05T10:11:12+01:00").isoformat(),
    "idna": lambda: "bücher.example".encode("idna"),
    "idna_decode": lambda: b"xn--bcher-kva.example".decode("idna"),
    "punycode": lambda: "bücher".encode("punycode"),
    "cp1252": lambda: "€".encode("cp1252"),
    "cp437": lambda: b"\x80".decode("cp437"),
    "latin9": lambda: "€".encode("iso8859-15"),
    "mac_roman": lambda: "é".encode("mac_roman"),
    "koi8_r": lambda: "щ".encode("koi8-r"),
    "utf_7": lambda: "é".encode("utf-7"),
    "raw_unicode_escape": lambda: "é\n".encode("raw_unicode_escape"),
    "unicode_escape": lambda: b"\\u00e9".decode("unicode_escape"),
    "charmap_cp850": lambda: "é".encode("cp850"),
    "shift_jis": lambda: "日本".encode("shift_jis"),
    "gbk": lambda: "中文".encode("gbk"),
    "euc_kr": lambda: "한".encode("euc-kr"),
    "big5": lambda: "中".encode("big5"),
    "hex_codec": lambda: codecs.encode(b"hi", "hex"),
    "base64_codec": lambda: codecs.encode(b"hi", "base64"),
    "zlib_codec": lambda: codecs.decode(codecs.encode(b"hi", "zlib"), "zlib"),
    "rot13": lambda: codecs.encode("hello", "rot13"),
    "uu_codec": lambda: codecs.encode(b"hi", "uu"),
    "quopri_codec": lambda: codecs.encode(b"h=i", "quopri"),
    "decimal": lambda: str(decimal.Decimal("1.10") * 3),
    "decimal_format": lambda: format(decimal.Decimal("1234.5"), ",.2f"),
    "decimal_n": lambda: format(decimal.Decimal("1234.5"), "n"),
    "float_n": lambda: format(1234.5, "n"),
    "json_utf16": lambda: json.loads('{"a": 1}'.encode("utf-16")),
    "unicodedata": lambda: unicodedata.normalize("NFC", "e\u0301"),
    "locale": lambda: locale.getpreferredencoding(False),
    "email_date": lambda: email.utils.parsedate_to_datetime("Tue, 05 Mar 2024 10:11:12 +0000").isoformat(),
    "email_parse": lambda: email.message_from_string("Subject: hi\n\nbody")["Subject"],
    "urllib_quote": lambda: urllib.parse.quote("a b/é"),
    "ipaddress": lambda: str(ipaddress.ip_address("10.0.0.1").is_private),
    "uuid5": lambda: str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")),
    "hashlib_sha256": lambda: hashlib.sha256(b"x").hexdigest()[:8],
    "hashlib_md5": lambda: hashlib.md5(b"x").hexdigest()[:8],
    "hmac": lambda: hmac.new(b"k", b"m", "sha256").hexdigest()[:8],
    "fractions": lambda: str(fractions.Fraction(3, 6)),
    "statistics": lambda: statistics.median([3, 1, 2]),
    "csv": lambda: next(csv.reader(["a,\"b,c\""])),
    "html_unescape": lambda: html.unescape("&eacute;&amp;"),
    "base64": lambda: base64.b64encode(b"hi"),
    "struct": lambda: struct.pack("<i", 1),
    "zlib": lambda: len(zlib.compress(b"hi")),
    "random_seeded": lambda: random.Random(1).randint(0, 100),
    "textwrap": lambda: textwrap.shorten("hello world foo", 10),
    "string_template": lambda: string.Template("$a").substitute(a=1),
    "shlex": lambda: shlex.split("a 'b c'"),
    "difflib": lambda: difflib.SequenceMatcher(None, "abc", "abd").ratio(),
    "re_unicode": lambda: re.findall(r"\w+", "héllo wörld"),

    "xml_etree": lambda: xml.etree.ElementTree.fromstring("<a x='1'/>").get("x"),
    "str_format_locale_upper": lambda: "ß".upper(),
    "int_arabic": lambda: int("٣"),
    "pprint": lambda: pprint.pformat({"a": 1}),
    "copy": lambda: copy.deepcopy([1, [2]]),
    "ast_literal": lambda: ast.literal_eval("[1, 'a']"),
    "pickle": lambda: len(pickle.dumps([1])),
    "traceback_format": lambda: traceback.format_exception_only(ValueError("x"))[0].strip(),
    "inspect_sig": lambda: str(inspect.signature(lambda a, b=1: 0)),
    "dataclasses": lambda: dataclasses.is_dataclass(1),
    "enum": lambda: enum.Enum("E", "A B").B.value,
    "time_strftime": lambda: time.strftime("%Y", time.gmtime(0)),
    "mktime": lambda: time.mktime((2024, 1, 1, 0, 0, 0, 0, 1, 0)) > 0,
    "os_urandom_len": lambda: len(os.urandom(4)),
    "secrets": lambda: len(secrets.token_hex(4)),
    "bisect": lambda: bisect.bisect([1, 2, 3], 2),
    "operator": lambda: operator.itemgetter(1)([1, 2]),
    "math": lambda: math.isqrt(17),
    "cmath": lambda: str(cmath.sqrt(-1)),
    "array": lambda: array.array("i", [1]).tobytes(),
    "collections": lambda: collections.Counter("aab").most_common(1),
    "itertools": lambda: list(itertools.pairwise([1, 2, 3])),
    "functools": lambda: functools.reduce(lambda a, b: a + b, [1, 2]),
    "contextlib": lambda: contextlib.suppress(ValueError) is not None,
    "gzip": lambda: len(gzip.compress(b"hi", mtime=0)),


    "binascii": lambda: binascii.crc32(b"hi"),
    "quopri": lambda: quopri.encodestring(b"h=i"),
    "mimetypes": lambda: mimetypes.guess_type("a.json")[0],
    "urllib_parse_qs": lambda: urllib.parse.parse_qs("a=1&b=2"),
    "glob_fnmatch": lambda: fnmatch.fnmatch("a.py", "*.py"),
    "json_dumps_sort": lambda: json.dumps({"b": 1, "a": [1.5]}, sort_keys=True),
    "str_casefold": lambda: "Straße".casefold(),
    "bytes_hex": lambda: b"\x01".hex(),
    "number_format": lambda: f"{1234567.891:,.2f}",
    "counter_most_common": lambda: collections.Counter("aab").most_common(1),
    "warnings_warn": lambda: _warned(),
    "logging_warning": lambda: logging.getLogger("x").warning("w %s", 1) is None,
    "hashlib_sha3": lambda: hashlib.new("sha3_256", b"x").hexdigest()[:8],
    "hashlib_blake2b": lambda: hashlib.new("blake2b", b"x").hexdigest()[:8],
    "pickle_roundtrip": lambda: pickle.loads(pickle.dumps({"a": [1]}, protocol=2)),
    "uuid4_len": lambda: len(str(uuid.uuid4())),
    "random_unseeded": lambda: 0 <= random.random() < 1,
    "email_policy_default": lambda: email.message_from_string("Subject: =?utf-8?q?caf=C3=A9?=\n\nb", policy=__import__("email.policy").policy.default)["Subject"],
    "str_format_map": lambda: f"{1!r:>5}",
    "re_sub_template": lambda: re.sub(r"(a)", r"\g<1>b", "a"),
    "datetime_tz": lambda: datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC).astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat(),
}


@dataflare.map
def lazy_stdlib(record: dataflare.Record) -> dataflare.Record:
    name = record.value.decode()
    try:
        result = repr(CASES[name]())
    except Exception as exc:
        result = f"{type(exc).__name__}: {exc}"
    return record.evolve(value=f"{name}: {result}")
