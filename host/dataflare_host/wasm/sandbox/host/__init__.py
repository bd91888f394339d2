"""The host process's side of the sandbox: limits, sandbox processes, instances, spawning.

No imports here: a sandbox process never needs this side, and the host imports
the module it needs.
"""
