"""The main function of a partition worker process (multiprocessing, spawn).

The process waits for a task on its pipe, runs it in a thread (so that the pipe
stays read: a stop arrives while the task runs), sends its reports up the pipe,
and waits for the next task; it ends when the driver closes the pipe.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from multiprocessing.connection import Connection

from dataflare_host.pipeline.partitions._log_forwarding import forward_logs
from dataflare_host.pipeline.partitions._messages import LogLine, Report, Task
from dataflare_host.pipeline.partitions._task_run import TaskPipelineMaker, TaskRun

__all__ = ["STOP", "partition_worker_main"]

STOP = "stop"
"""The message that stops the task running (its batch in flight is committed)."""


def partition_worker_main(
    conn: Connection, pipeline_file: str, make: TaskPipelineMaker, log_level: int
) -> None:
    """Run the tasks the driver sends until it closes the pipe; log lines at ``log_level``
    and above go up the pipe too."""
    # Ctrl-C on a terminal reaches the whole process group: stopping is the driver's call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sending = threading.Lock()

    def send(report: Report | LogLine) -> None:
        # OSError: the driver is gone, nobody is left to tell.
        with sending, contextlib.suppress(OSError):
            conn.send(report)

    forward_logs(send, log_level)

    running: TaskRun | None = None
    thread: threading.Thread | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if isinstance(message, Task):
            if thread is not None:
                thread.join()
            running = TaskRun(make, pipeline_file, message, send)
            thread = threading.Thread(target=running.run, name="dataflare-partition-task")
            thread.start()
        elif message == STOP and running is not None:
            running.stop()
    if running is not None:
        running.stop()
    if thread is not None:
        thread.join()
