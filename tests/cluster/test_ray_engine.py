"""``engine: ray``: the same pipeline on a real two-node Ray cluster on this machine.

``ray.cluster_utils.Cluster`` starts a head and a second node (one CPU each);
the workers are actors with a quarter CPU each, so Ray never waits for
resources on a 2-core machine.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "pipelines"))
sys.path.insert(0, str(Path(__file__).parent.parent / "kafka"))
from kafka_broker import KafkaBroker, build
from support.servers import PostgresServer
from test_workers import (
    FILTER_MAP,
    add_upsert_sink,
    assert_upserted,
    document,
    even_running_sums,
    expected_filter_map,
    filter_map_held,
    keyed_outputs,
    keyed_pipeline,
    outputs,
    pipeline_file,
    run,
    run_killing_ten,
    write_input,
)

from dataflare_host.pipeline import Pipeline, PipelineError

ray = pytest.importorskip("ray", reason="engine: ray needs the ray extra (scripts/setup)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    _join(nodes.address)
    nodes.wait_for_nodes()
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def _join(address: str) -> None:
    ray.init(address=address, include_dashboard=False, log_to_driver=False)


@contextlib.contextmanager
def _outside_ray(cluster: Any) -> Iterator[None]:
    """This test process out of Ray for the block (a run in it joins by itself), and back
    in the module's cluster after it, whatever the block left."""
    ray.shutdown()
    try:
        yield
    finally:
        if not ray.is_initialized():
            _join(cluster.address)


def test_the_same_pipeline_on_two_ray_nodes_writes_what_local_workers_write(
    cluster: Any, tmp_path: Path
) -> None:
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    count = 20_000
    local, remote = tmp_path / "local", tmp_path / "ray"
    for directory, top in ((local, {"workers": "2"}), (remote, {"workers": "2", "engine": "ray"})):
        directory.mkdir()
        write_input(directory, count)
        summary, _ = run(pipeline_file(directory, FILTER_MAP, **top))
        assert summary.status == "completed", summary.error
    assert outputs(local) == expected_filter_map(count)
    assert outputs(remote) == outputs(local)
    assert summary.engine.startswith("engine ray, 2 workers")
    workers = [s for s in summary.stats if s.role == "worker"]
    assert sum(w.records_in for w in workers) == count
    assert all("on node" in w.kind for w in workers)


def test_a_keyed_aggregate_on_ray_equals_one_worker_per_key(cluster: Any, tmp_path: Path) -> None:
    count = 4_000
    write_input(tmp_path, count)
    file = keyed_pipeline(tmp_path, "2")
    file.write_text(file.read_text() + "engine: ray\n")
    summary, _ = run(file)
    assert summary.status == "completed", summary.error
    assert keyed_outputs(tmp_path, count) == even_running_sums(count)


def test_ray_actors_killed_mid_run_lose_nothing_and_upsert_exactly(
    cluster: Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Ten actors SIGKILLed mid-run: the file is the expected list and a PostgreSQL
    table upserted on ``id`` beside it the expected set (the server starts in this
    test's worker)."""
    count = 300_000
    write_input(tmp_path, count)
    held = tmp_path / "held"
    file = pipeline_file(tmp_path, filter_map_held(held), workers="2", engine="ray", batch=500)
    dsn = add_upsert_sink(file, postgres_server)
    summary = run_killing_ten(file, within_s=150, every_s=0.3, held=held)
    assert outputs(tmp_path) == expected_filter_map(count)
    assert int(summary.engine.split(", ")[-1].split()[0]) >= 10
    assert_upserted(postgres_server, dsn, count)


def produce_documents(broker: KafkaBroker, topic: str, count: int) -> None:
    """``document(i)`` for i below ``count`` into ``topic``, keyed by user."""
    broker.produce(
        topic,
        (
            {
                "key": document(i)["user"].encode(),
                "value": json.dumps(document(i), separators=(",", ":")).encode(),
            }
            for i in range(count)
        ),
    )


def kafka_to_kafka(file: Path, broker: KafkaBroker, source: str, out: str, group: str) -> None:
    """Make ``file``'s pipeline read topic ``source`` to its end and write topic ``out``."""
    doc = yaml.safe_load(file.read_text())
    doc["sources"][0]["config"] = {
        "plugin_type": "kafka",
        "connection": {
            "bootstrap_servers": broker.bootstrap,
            "topic": source,
            "group": group,
            "stop_when_caught_up": True,
        },
    }
    doc["sinks"] = [
        {
            "id": "out",
            "type": "plugin",
            "config": {
                "plugin_type": "kafka",
                "connection": {"bootstrap_servers": broker.bootstrap, "topic": out},
            },
        }
    ]
    file.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_ray_actors_killed_on_a_kafka_to_kafka_run_deliver_exactly_once(
    cluster: Any, tmp_path: Path
) -> None:
    """Ten actors SIGKILLed mid-run while a 4-partition topic goes through the filter and the
    map into another topic with ``delivery: exactly_once``: a ``read_committed`` reader sees
    every expected record, each once (the actors read the partitions and write in
    transactions of their own; a killed actor's replacement fences it, aborts what it left
    open and resumes its partitions from their committed offsets). The broker is
    this test's own (the Ray cluster's tests run in one pytest worker, the broker's in
    another)."""
    build()
    broker = KafkaBroker(tmp_path / "broker")
    broker.start()
    try:
        source, out = "ray-in", "ray-out"
        broker.create_topic(source, 4)
        broker.create_topic(out, 2)
        count = 100_000
        produce_documents(broker, source, count)
        held = tmp_path / "held"
        file = pipeline_file(
            tmp_path, filter_map_held(held), workers="2", engine="ray", batch=500,
            delivery="exactly_once",
        )
        kafka_to_kafka(file, broker, source, out, "ray")
        summary = run_killing_ten(file, within_s=150, every_s=0.3, held=held)
        assert summary.engine.startswith("2 ray worker(s) reading partitions of 'in'")
        assert sum(w.restarts for w in summary.stats if w.role == "worker") == 10
        seen = [json.loads(m.value()) for m in broker.consume_all(out)]  # type: ignore[attr-defined]
    finally:
        broker.stop()
    once = collections.Counter(document["id"] for document in seen)
    assert max(once.values()) == 1, [i for i, c in once.items() if c > 1][:5]
    assert sorted(seen, key=lambda d: d["id"]) == expected_filter_map(count)


def test_ray_actors_read_a_globs_files_and_a_killed_actors_file_resumes_elsewhere(
    cluster: Any, tmp_path: Path
) -> None:
    """A 4-file glob with ``out/{partition}`` on two Ray nodes: the actors read the files
    themselves and each file's output equals local workers'; ten actors SIGKILLed mid-run
    lose nothing (each killed actor's file resumes in a new actor from its last
    reported position)."""
    from test_partitions import expected, lines_of, partitioned, write_parts

    local, remote = tmp_path / "local", tmp_path / "ray"
    ids = write_parts(local)
    write_parts(remote)
    for directory, top in ((local, {"workers": "2"}), (remote, {"workers": "2", "engine": "ray"})):
        summary, _ = run(partitioned(directory, FILTER_MAP, **top))
        assert summary.status == "completed", summary.error
    assert summary.engine.startswith("2 ray worker(s) reading partitions of 'in' (pid ")
    assert summary.engine.count("on node") == 2
    for name, file_ids in ids.items():
        assert lines_of(remote / "out" / name) == expected(file_ids)
        assert (remote / "out" / name).read_bytes() == (local / "out" / name).read_bytes()

    killed = tmp_path / "killed"
    ids = write_parts(killed, (8_000,) * 4)
    held = killed / "held"
    file = partitioned(killed, filter_map_held(held), workers="2", engine="ray",
                       checkpoint={"interval_ms": 200})
    summary = run_killing_ten(file, within_s=150, every_s=0.3, held=held)
    assert sum(w.restarts for w in summary.stats if w.role == "worker") == 10
    for name, file_ids in ids.items():
        written = [d["id"] for d in lines_of(killed / "out" / name)]
        assert list(dict.fromkeys(written)) == [d["id"] for d in expected(file_ids)], name


def test_ray_actors_read_a_four_partition_topic_themselves(cluster: Any, tmp_path: Path) -> None:
    """At least once, a 4-partition topic on two Ray nodes: each actor reads two partitions
    itself (the driver reads nothing) into another topic; every expected record arrives.
    The broker is this test's own, as above."""
    build()
    broker = KafkaBroker(tmp_path / "broker")
    broker.start()
    try:
        broker.create_topic("ray-parts-in", 4)
        broker.create_topic("ray-parts-out", 4)
        count = 20_000
        produce_documents(broker, "ray-parts-in", count)
        file = pipeline_file(tmp_path, FILTER_MAP, workers="2", engine="ray")
        kafka_to_kafka(file, broker, "ray-parts-in", "ray-parts-out", "ray-parts")
        summary, _ = run(file)
        seen = [json.loads(m.value()) for m in broker.consume_all("ray-parts-out")]  # type: ignore[attr-defined]
    finally:
        broker.stop()
    assert summary.status == "completed", summary.error
    assert summary.engine.startswith("2 ray worker(s) reading partitions of 'in' (pid ")
    assert summary.engine.count("on node") == 2
    readers = [s for s in summary.stats if s.role == "worker"]
    assert all(w.records_in > 0 for w in readers), "each actor read its partitions"
    assert sum(w.records_in for w in readers) == count
    assert sorted(seen, key=lambda d: d["id"]) == expected_filter_map(count)


def test_a_pipeline_named_relative_to_the_working_folder_runs_on_ray(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The actors' working folder is not the driver's: ``dataflare run pipeline.yaml``
    from the pipeline's folder reaches them as a path they can open (the chain's
    actors and the partition workers' alike)."""
    from test_partitions import expected, lines_of, partitioned, write_parts

    chain, parts = tmp_path / "chain", tmp_path / "parts"
    chain.mkdir()
    write_input(chain, 2_000)
    ids = write_parts(parts, (300, 200))
    for directory, file in (
        (chain, pipeline_file(chain, FILTER_MAP, workers="2", engine="ray")),
        (parts, partitioned(parts, FILTER_MAP, workers="2", engine="ray")),
    ):
        monkeypatch.chdir(directory)
        summary, _ = run(Path(file.name))
        assert summary.status == "completed", summary.error
    assert outputs(chain) == expected_filter_map(2_000)
    for name, file_ids in ids.items():
        assert lines_of(parts / "out" / name) == expected(file_ids)


def test_the_last_of_two_runs_sharing_a_joined_ray_leaves_it(cluster: Any, tmp_path: Path) -> None:
    """Two runs in one program (threads) that joined Ray: the first to end leaves Ray
    joined for the other, whose actors go on; the last one leaves."""
    from dataflare_host.pipeline.engines._ray import RayBackend

    file = pipeline_file(tmp_path, FILTER_MAP, workers="2")
    with _outside_ray(cluster):
        first, second = RayBackend(file, 1, cluster.address), RayBackend(file, 1, cluster.address)
        second.spawn(0)
        first.close()
        assert ray.is_initialized()
        assert ray.get(second.actor(0).pid.remote(), timeout=60) > 0
        second.close()
        second.close()
        assert not ray.is_initialized()


def test_a_run_whose_ray_cluster_is_lost_fails_in_one_line_and_resumes_on_another(
    cluster: Any, tmp_path: Path
) -> None:
    """A cluster of its own, shut down while its actors read a 4-file glob: the run fails
    in one line naming the cluster's address (not after Ray's minute of retries, nor with
    Ray ending the process), and the rerun on another cluster writes every file whole."""
    from ray.cluster_utils import Cluster
    from test_partitions import expected, lines_of, partitioned, write_parts

    ids = write_parts(tmp_path, (4_000,) * 4)
    held = tmp_path / "held"
    held.touch()
    doomed = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    lost = doomed.address
    try:
        with _outside_ray(cluster):
            file = partitioned(tmp_path, filter_map_held(held), workers="2", engine="ray",
                               address=lost, checkpoint={"interval_ms": 200})

            def lose_the_cluster(pipeline: Pipeline) -> None:
                while not any(s.records_in for s in pipeline.stats if s.role == "sink"):
                    time.sleep(0.05)
                # Every process of the cluster killed (its GCS, raylet and actors) under
                # the driver, which Cluster.shutdown would disconnect first.
                doomed.head_node.kill_all_processes(check_alive=False, wait=True)

            summary, _ = run(file, lose_the_cluster)
            assert summary.status == "failed"
            assert re.fullmatch(
                r"lost the Ray cluster: nothing answers at \S+ \(Connection refused\); what "
                r"was done is in the checkpoint: rerun once the cluster is back",
                summary.error or "",
            ), summary.error
    finally:
        doomed.shutdown()
    held.unlink()
    file.write_text(file.read_text().replace(lost, cluster.address))
    summary, _ = run(file)
    assert summary.status == "completed", summary.error
    for name, file_ids in ids.items():
        written = [d["id"] for d in lines_of(tmp_path / "out" / name)]
        assert list(dict.fromkeys(written)) == [d["id"] for d in expected(file_ids)], name


def test_an_actor_that_cannot_load_the_pipeline_says_why_in_one_line(
    cluster: Any, tmp_path: Path
) -> None:
    """What an actor raised while starting reaches the driver as itself, told in one
    line (Ray would report it as text with the actor's traceback in it)."""
    from dataflare_host.pipeline.engines._ray import RayBackend

    missing = tmp_path / "gone.yaml"
    backend = RayBackend(missing, 1, cluster.address)
    try:
        with pytest.raises(PipelineError) as caught:
            backend.spawn(0)
    finally:
        backend.close()
    assert str(caught.value) == (
        f"worker-1 (Ray actor) could not start: {missing}: cannot read the pipeline file: "
        "No such file or directory"
    )


def test_a_run_that_joined_ray_leaves_it_and_one_that_found_it_joined_stays(
    cluster: Any, tmp_path: Path
) -> None:
    """A run that joined Ray itself leaves when done (its actors end with its job, without
    the half-second wait Ray's exit hook adds); a run inside a program already joined
    (this test's) leaves Ray joined."""
    count = 1_000
    joins, found = tmp_path / "joins", tmp_path / "found"
    for directory in (joins, found):
        directory.mkdir()
        write_input(directory, count)
    with _outside_ray(cluster):
        summary, _ = run(pipeline_file(joins, FILTER_MAP, workers="2", engine="ray",
                                       address=cluster.address))
        assert summary.status == "completed", summary.error
        assert not ray.is_initialized()
    summary, _ = run(pipeline_file(found, FILTER_MAP, workers="2", engine="ray"))
    assert summary.status == "completed", summary.error
    assert ray.is_initialized()
    assert outputs(joins) == outputs(found) == expected_filter_map(count)


def _process_cpu(pid: int) -> float:
    """A live process's CPU seconds, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_driver_spends_almost_none_of_a_ray_runs_cpu(cluster: Any, tmp_path: Path) -> None:
    """Once joined to Ray, the driver's CPU time during a run whose actors read a 4-file
    glob is at most 3% of the run's (the driver's and both actors', read from /proc while
    they live: the cluster's nodes are on this machine). CPU seconds, not wall-clock."""
    from test_partitions import partitioned, write_parts

    write_parts(tmp_path, (60_000,) * 4)
    pipeline = Pipeline.from_file(partitioned(tmp_path, FILTER_MAP, workers="2", engine="ray"))
    try:
        own = resource.getrusage(resource.RUSAGE_SELF)
        summary = pipeline.run(None, handle_signals=False)
        end = resource.getrusage(resource.RUSAGE_SELF)
        rows = [s.kind for s in summary.stats if s.role == "worker"]
        actors = [_process_cpu(int(re.findall(r"pid (\d+)", kind)[0])) for kind in rows]
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert len(actors) == 2
    driver = (end.ru_utime + end.ru_stime) - (own.ru_utime + own.ru_stime)
    assert min(actors) > 0.5, f"the actors used {actors} s: they did not do the reading"
    share = driver / (driver + sum(actors))
    assert share <= 0.03, f"the driver used {driver:.3f} s of {driver + sum(actors):.3f} s"


def test_ray_says_nothing_of_its_own_when_an_actor_dies(cluster: Any, tmp_path: Path) -> None:
    """``dataflare run`` on Ray with an actor that dies at one record again and again:
    each death is our one line (a new worker resumes), then the run fails in one line.
    Ray's driver would print its own paragraph on stdout for each death (colour codes,
    the OOM killer's possible part), where a stdout sink's records go."""
    import subprocess

    from test_partitions import CRASHING, partitioned, proc, write_parts

    ids = write_parts(tmp_path, (300, 300))
    (tmp_path / "crash.py").write_text(CRASHING)
    at = str(ids["part-1.jsonl"][3])
    crash = proc("crash", "filter", tmp_path / "crash.py", params={"at": at})
    file = partitioned(
        tmp_path, [crash, *FILTER_MAP], workers="2", engine="ray", address=cluster.address
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dataflare"), "run", "--quiet", str(file)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "raylet" not in done.stdout, done.stdout
    assert "A worker died" not in done.stdout, done.stdout
    ray_says = ("raylet", "A worker died or was killed", "\x1b[")
    lines = done.stderr.splitlines()
    assert not [line for line in lines if any(text in line for text in ray_says)], lines
    assert lines[-1].startswith("error: "), lines
    assert "died 4 times in a row" in lines[-1], lines
    assert sum("a new worker resumes them" in line for line in lines) == 3, lines
