"""Running components in sandbox processes, in rooms named by the process that runs them.

- ``protocol``: what crosses a pipe or the fork server's socket (standard library only);
- ``host/``: runs in the host process (limits, sandbox processes, instances, spawning);
- ``child/``: runs inside a sandbox process (standard library, wasmtime and the protocol only);
- ``server/``: the fork server, which forks sandbox processes.

No imports here: a sandbox process runs this file on its way to ``child/``.
"""
