"""Hostile: prints to stdout and stderr on a record whose value is b"attack"."""

import sys

import sdk


@sdk.filter
def shout(record: sdk.Record) -> bool:
    if record.value == b"attack":
        print("guest says hello on stdout")
        print("guest says hello on stderr", file=sys.stderr)
    return True
