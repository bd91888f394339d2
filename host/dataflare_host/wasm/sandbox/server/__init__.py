"""The fork server: a process that has imported what a sandbox process needs, and forks them.

No imports here: the server is started as ``python -I -S -c SERVER_BOOT``.
"""
