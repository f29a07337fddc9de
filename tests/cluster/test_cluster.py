"""Parroter split over seven hosts that share no disk (tests/cluster/harness.py), broken the ways
hosts break. Each scenario asserts exact outcomes from the database and the bucket, and leaves
the cluster whole for the next. `make test-cluster`; needs root."""

import io
import os
import re
import signal
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.cluster.harness import BUCKET, HOSTS, OPERATOR, PASSWORD, USERS, Cluster, s3_client

pytestmark = pytest.mark.cluster
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield running
    running.stop()


def photo(seed: int, size=(1600, 1200)) -> bytes:
    """A JPEG that takes a worker a moment: noise does not compress, so it decodes in full."""
    image = Image.effect_noise(size, 40 + seed % 20).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def browser(cluster: Cluster) -> requests.Session:
    """A client on this machine that trusts the edge's certificate alone."""
    session = requests.Session()
    # The environment's REQUESTS_CA_BUNDLE (or a proxy) would win over the session's own.
    session.trust_env = False
    session.verify = str(cluster.certificate)
    return session


def api(cluster: Cluster, user: str) -> requests.Session:
    session = browser(cluster)
    session.headers["Authorization"] = f"Bearer {cluster.tokens[user]}"
    return session


def submit(cluster: Cluster, count: int, *, size=(1600, 1200)) -> list[str]:
    """`count` jobs, through the edge, from every person in turn, several at a time."""
    images = [photo(seed, size) for seed in range(8)]
    sessions = {user: api(cluster, user) for user in USERS}

    def one(index: int) -> str:
        user = USERS[index % len(USERS)]
        files = {"images": (f"photo-{index}.jpg", images[index % len(images)], "image/jpeg")}
        answer = sessions[user].post(f"{cluster.site}/api/jobs", files=files,
                                     data={"sizes": "128"}, timeout=30)  # fmt: skip
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def wait_until_finished(cluster: Cluster, ids: list[str], timeout: float) -> dict[str, tuple]:
    """id -> (status, worker, attempts, finished_at) once every job has finished."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.query(
            "SELECT id::text, status, worker, attempts, finished_at FROM jobs_job"
            " WHERE id::text = ANY(%s)",
            ids,
        )
        jobs = {row[0]: row[1:] for row in rows}
        if len(jobs) == len(ids) and all(job[0] in FINISHED for job in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            waiting = sorted({job[0] for job in jobs.values()} - set(FINISHED))
            pytest.fail(f"jobs still {waiting} after {timeout:.0f} s")
        time.sleep(0.5)


def bucket_folders(ids: list[str]) -> dict[str, list[str]]:
    s3 = s3_client()
    folders = {}
    for job_id in ids:
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job_id}/")
        folders[job_id] = sorted(item["Key"].rsplit("/", 1)[1] for item in listing["Contents"])
    return folders


def assert_one_archive_each(cluster: Cluster, ids: list[str], *, settle: float = 30) -> None:
    """Each job's folder holds its source and the archive of the delivery that finished it
    (named after the job's task id), nothing else. A superseded delivery (its host cut off)
    stores its own archive and removes it once its finish is refused, so a folder may hold it
    for a moment after the job finished elsewhere."""
    task_ids = dict(cluster.query(
        "SELECT id::text, task_id FROM jobs_job WHERE id::text = ANY(%s)", ids
    ))  # fmt: skip
    expected = {job_id: ["source.jpg", f"thumbnails-{task_ids[job_id]}.zip"] for job_id in ids}
    deadline = time.monotonic() + settle
    while (folders := bucket_folders(ids)) != expected:
        wrong = {job_id: files for job_id, files in folders.items() if files != expected[job_id]}
        assert time.monotonic() < deadline, wrong
        time.sleep(0.5)


def requests_served(cluster: Cluster, host: str) -> int:
    return len(re.findall(r'"POST /api/jobs HTTP', cluster.log(host, "web")))


def test_200_jobs_from_several_people_spread_over_both_web_and_both_worker_hosts(cluster):
    before = {host: requests_served(cluster, host) for host in ("web1", "web2")}
    ids = submit(cluster, 200)
    jobs = wait_until_finished(cluster, ids, timeout=300)

    assert {job[0] for job in jobs.values()} == {"succeeded"}
    assert {job[2] for job in jobs.values()} == {1}  # each ran once
    by_worker = {name: sum(1 for job in jobs.values() if job[1] == name)
                 for name in ("celery@work1", "celery@work2")}  # fmt: skip
    assert sum(by_worker.values()) == 200 and min(by_worker.values()) > 0, by_worker
    served = {host: requests_served(cluster, host) - before[host] for host in before}
    assert sum(served.values()) == 200 and min(served.values()) > 0, served
    assert_one_archive_each(cluster, ids)
    # Each ZIP as its owner fetches it: the app checks who asks, then S3 serves it.
    owners = dict(cluster.query(
        "SELECT j.id::text, u.username FROM jobs_job j JOIN auth_user u ON u.id = j.owner_id"
        " WHERE j.id::text = ANY(%s)", ids,
    ))  # fmt: skip
    sessions = {user: api(cluster, user) for user in USERS}
    for job_id in ids:
        archive_url = f"{cluster.site}/api/jobs/{job_id}/archive"
        answer = sessions[owners[job_id]].get(archive_url, timeout=30)
        assert answer.status_code == 200, answer.text
        with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
            assert archive.testzip() is None and len(archive.namelist()) == 1
    stranger = next(user for user in USERS if user != owners[ids[0]])
    refused = sessions[stranger].get(f"{cluster.site}/api/jobs/{ids[0]}/archive", timeout=30)
    assert refused.status_code == 404


def signed_in_operator(cluster: Cluster) -> requests.Session:
    session = browser(cluster)
    login = f"{cluster.site}/accounts/login/"
    page = session.get(login, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        login,
        data={"username": OPERATOR, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": login},
        timeout=30,
    )
    assert answer.ok and "sessionid" in session.cookies, answer.text[-2000:]
    return session


def worker_states(operator: requests.Session, cluster: Cluster) -> dict[str, str]:
    """Worker -> online/offline as /ops/ shows it to an operator, through the edge."""
    html = operator.get(f"{cluster.site}/ops/workers", timeout=30).text
    rows = re.findall(r'<td class="mono"[^>]*>([^<]+@[^<]+)</td>\s*<td><span class="badge '
                      r'[a-z]+">(online|offline)</span>', html)  # fmt: skip
    return dict(rows)


def test_ops_and_flower_list_both_workers_with_their_hosts(cluster):
    operator = signed_in_operator(cluster)
    states = worker_states(operator, cluster)
    assert states["celery@work1"] == states["celery@work2"] == "online", states
    assert states["housekeeping@ops"] == "online", states
    # refresh: Flower asks the workers (inspect) instead of answering from what it cached.
    flower = operator.get(f"{cluster.site}/flower/api/workers?refresh=1", timeout=30)
    assert flower.status_code == 200, flower.text[:500]
    assert {"celery@work1", "celery@work2"} <= set(flower.json())
    anonymous = browser(cluster).get(
        f"{cluster.site}/flower/api/workers", timeout=30, allow_redirects=False
    )
    assert anonymous.status_code in (302, 401, 403)


def test_a_worker_host_killed_mid_run_its_jobs_finish_once_on_the_other(cluster):
    operator = signed_in_operator(cluster)
    ids = submit(cluster, 40, size=(3000, 2000))
    deadline = time.monotonic() + 60
    while True:  # frozen first, so what it runs cannot finish between the look and the kill
        cluster.signal_host("work1", signal.SIGSTOP)
        interrupted = {row[0] for row in cluster.query(
            "SELECT id::text FROM jobs_job WHERE status = 'running' AND worker = 'celery@work1'"
            " AND id::text = ANY(%s)", ids,
        )}  # fmt: skip
        if interrupted:
            break
        cluster.signal_host("work1", signal.SIGCONT)
        assert time.monotonic() < deadline, "work1 never ran a job"
        time.sleep(0.05)
    cluster.kill_host("work1")
    killed_at = time.monotonic()

    seen_offline = None
    while seen_offline is None and time.monotonic() - killed_at < 30:
        if worker_states(operator, cluster).get("celery@work1") == "offline":
            seen_offline = time.monotonic() - killed_at
        time.sleep(0.5)
    jobs = wait_until_finished(cluster, ids, timeout=240)
    recovered_in = time.monotonic() - killed_at

    assert seen_offline is not None and seen_offline <= 15, seen_offline
    assert {job[0] for job in jobs.values()} == {"succeeded"}
    for job_id in interrupted:
        status, worker, attempts, _ = jobs[job_id]
        assert (worker, attempts) == ("celery@work2", 2), jobs[job_id]
    assert_one_archive_each(cluster, ids)
    # Heard last up to 2 s before the kill, lost after PARROTER_WORKER_LOST_AFTER (15 s), seen by
    # the monitor's next round: its jobs are queued again well within a minute; the rest is
    # work2 running the 40 jobs alone.
    assert "worker celery@work1 lost" in cluster.log("ops", "monitor")
    print(f"work1 offline on /ops/ after {seen_offline:.1f} s; all 40 done {recovered_in:.0f} s "
          f"after the kill")  # fmt: skip

    cluster.start_service("work1", "worker")  # the host comes back for the next scenario
    deadline = time.monotonic() + 60
    while "celery@work1" not in cluster.online_workers():
        assert time.monotonic() < deadline, "work1 did not come back"
        time.sleep(0.5)


def test_a_worker_host_cut_off_for_30_s_loses_nothing_and_runs_nothing_twice(cluster):
    ids = submit(cluster, 30, size=(3000, 2000))
    deadline = time.monotonic() + 60
    while not cluster.query(
        "SELECT 1 FROM jobs_job WHERE status = 'running' AND worker = 'celery@work2'"
        " AND id::text = ANY(%s)", ids,
    ):  # fmt: skip
        assert time.monotonic() < deadline, "work2 never ran a job"
        time.sleep(0.05)
    cluster.network.cut("work2")
    try:
        time.sleep(30)
    finally:
        cluster.network.plug("work2")
    jobs = wait_until_finished(cluster, ids, timeout=240)

    assert {job[0] for job in jobs.values()} == {"succeeded"}
    assert max(job[2] for job in jobs.values()) <= 2
    # One archive each: what work2 stored for jobs run again elsewhere it removed itself.
    assert_one_archive_each(cluster, ids)
    results = cluster.query(
        "SELECT j.id::text, count(r.id) FROM jobs_job j"
        " LEFT JOIN django_celery_results_taskresult r"
        " ON r.task_id = j.task_id AND r.status = 'SUCCESS' WHERE j.id::text = ANY(%s)"
        " GROUP BY j.id", ids,
    )  # fmt: skip
    assert {count for _, count in results} == {1}  # each job's delivery recorded once
    # Cut off mid-job, work2 was lost for the monitor: its jobs ran again on work1.
    assert "worker celery@work2 lost" in cluster.log("ops", "monitor")
    deadline = time.monotonic() + 60
    while "celery@work2" not in cluster.online_workers():  # and the host is back at work
        assert time.monotonic() < deadline, "work2 did not come back"
        time.sleep(0.5)


def test_after_redis_restarts_on_data_the_dispatcher_sends_what_it_lost(cluster):
    ids = submit(cluster, 30, size=(3000, 2000))
    cluster.restart_redis()
    restarted = time.time()
    jobs = wait_until_finished(cluster, ids, timeout=240)
    assert {job[0] for job in jobs.values()} == {"succeeded"}
    sent_again = cluster.query(
        "SELECT count(*) FROM jobs_job"
        " WHERE id::text = ANY(%s) AND published_at > to_timestamp(%s)",
        ids, restarted,
    )[0][0]  # fmt: skip
    assert sent_again > 0, "nothing was lost by the restart: the scenario proved nothing"
    assert_one_archive_each(cluster, ids)


RETENTION = """
from jobs.tasks import purge_expired_jobs
print(purge_expired_jobs())
"""


def test_retention_on_the_ops_host_removes_the_jobs_objects_from_the_bucket(cluster):
    ids = submit(cluster, 6)
    wait_until_finished(cluster, ids, timeout=120)
    expired, kept = ids[:4], ids[4:]
    cluster.query(
        "UPDATE jobs_job SET finished_at = now() - interval '40 days' WHERE id::text = ANY(%s)"
        " RETURNING 1", expired,
    )  # fmt: skip
    # The chore as the housekeeping worker runs it (its lease, its record), on the ops host.
    outcome = cluster.manage("ops", "shell", stdin=RETENTION)
    assert "'jobs': 4" in outcome, outcome
    left = cluster.query("SELECT id::text FROM jobs_job WHERE id::text = ANY(%s)", ids)
    assert sorted(row[0] for row in left) == sorted(kept)
    s3 = s3_client()
    deadline = time.monotonic() + 30  # the files go once each batch has committed
    while any(s3.list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job_id}/")["KeyCount"]
              for job_id in expired):  # fmt: skip
        assert time.monotonic() < deadline, "the expired jobs' objects are still in the bucket"
        time.sleep(0.5)
    assert_one_archive_each(cluster, kept)


ORPHAN_SWEEP = """
from datetime import timedelta
from jobs import housekeeping
print(housekeeping.sweep_orphan_files(older_than=timedelta(0)))
"""


def test_the_orphan_sweep_on_ops_reads_the_bucket_and_leaves_every_jobs_files(cluster):
    ids = submit(cluster, 3)
    wait_until_finished(cluster, ids, timeout=120)
    s3 = s3_client()
    orphans = [f"jobs/{uuid.uuid4()}/thumbnails.zip" for _ in range(3)]
    for key in orphans:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"PK")
    # Nothing is being written now, so nothing is too young to judge (older_than 0).
    outcome = cluster.manage("ops", "shell", stdin=ORPHAN_SWEEP)
    assert "'folders': 3, 'files': 3" in outcome, outcome
    assert all(s3.list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"] == 0 for key in orphans)
    assert_one_archive_each(cluster, ids)


def test_each_host_clears_its_own_stale_temporary_files_when_its_service_starts(cluster):
    day_and_more = time.time() - 26 * 3600
    planted = {}
    for host in ("work1", "web2"):
        folder = cluster.folder / host / "tmp"
        stale, fresh = folder / "cut-off-upload.part", folder / "being-written.part"
        stale.write_bytes(b"x")
        os.utime(stale, (day_and_more, day_and_more))
        fresh.write_bytes(b"x")
        planted[host] = (stale, fresh)
    service = {"work1": "worker", "web2": "web"}
    for host, name in service.items():
        cluster.kill_host(host, signal.SIGTERM)
        extra = {"WEB_BIND": f"{HOSTS[host]}:8000"} if name == "web" else {}
        cluster.start_service(host, name, **extra)
    deadline = time.monotonic() + 60
    while any(stale.exists() for stale, _ in planted.values()):
        assert time.monotonic() < deadline, {h: s.exists() for h, (s, _) in planted.items()}
        time.sleep(0.5)
    assert all(fresh.exists() for _, fresh in planted.values())  # young: maybe still written
    while "celery@work1" not in cluster.online_workers():  # back at work for what follows
        assert time.monotonic() < deadline, "work1 did not come back"
        time.sleep(0.5)


def test_the_cluster_runs_from_its_own_folders(cluster):
    # No host writes into another's folders: only S3 holds job files.
    for host in ("web1", "web2", "work1", "work2", "ops"):
        media = Path(cluster.folder / host / "media")
        assert not (media / "jobs").exists(), f"{host} wrote job files to its own disk"
