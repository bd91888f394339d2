"""What runs inside a sandbox process: the standard library, wasmtime and the protocol only.

No imports here: every module below is on the path to a plugin's first record.
"""
