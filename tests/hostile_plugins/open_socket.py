"""Hostile: opens a network connection on a record whose value is b"attack"."""

import sdk


@sdk.map
def phone_home(record: sdk.Record) -> sdk.Record:
    if record.value == b"attack":
        import socket

        with socket.create_connection(("127.0.0.1", 9), timeout=1) as conn:
            conn.sendall(b"stolen")
        return record.evolve(value=b"sent")
    return record
