"""Inputs straight from object storage: a real S3 API (moto's server) on 127.0.0.1.

Every test points the AWS chain at that server with fake credentials and no profile, and turns
instance metadata off, so nothing here can reach AWS itself.
"""

import gzip
import http.client
import json
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import EXAMPLE_CONFIG, TEST_KEY, ndjson, records, run, track

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_env(monkeypatch, tmp_path, endpoint, key="testing", secret="testing"):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(moto_endpoint, monkeypatch, tmp_path):
    """A client for a fresh bucket on the moto server; the env points at the server."""
    aws_env(monkeypatch, tmp_path, moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.bucket = f"bkt-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=client.bucket)
    return client


def send(*args, env=None):
    argv = ["send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *args]
    return run(*argv, env=env)


DAYS = ("1764201600000", "1764288000000", "1764374400000")  # UTC midnights


def segment_export(root) -> dict[str, bytes]:
    """A Segment S3-destination layout: gzipped NDJSON per received day, with other messages
    among the tracks and a bad line, as key -> bytes."""
    files = {}
    for d, day in enumerate(DAYS):
        for part in range(2):
            lines = [
                track(message_id=f"{d}-{part}-{i}", email=f"c{i}@example.com") for i in range(5)
            ]
            lines.append({"type": "identify", "messageId": f"id-{d}-{part}"})
            data = ndjson(*lines) + b"not json\n"
            files[f"segment-logs/src1/{day}/part-{part}.gz"] = gzip.compress(data)
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


def put_all(s3, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        s3.put_object(Bucket=s3.bucket, Key=key, Body=data)


@pytest.mark.slow
def test_a_bucket_reads_as_the_same_files_on_disk(s3, tmp_path):
    local = tmp_path / "export"
    put_all(s3, segment_export(local))
    url = f"s3://{s3.bucket}/segment-logs"
    remote = send(url)
    on_disk = send(str(local / "segment-logs"))
    assert remote.exit_code == on_disk.exit_code == 1, remote.stderr  # the bad lines
    assert remote.stdout.replace(url, "ROOT") == on_disk.stdout.replace(
        str(local / "segment-logs"), "ROOT"
    )
    got = records(remote.stdout)
    assert len([r for r in got if r["outcome"] == "dry_run"]) == 60  # two campaigns each
    assert got[0]["source"] == f"{url}/src1/{DAYS[0]}/part-0.gz"


@pytest.mark.slow
def test_a_single_object_and_pruning_by_day_folder(s3, tmp_path):
    put_all(s3, segment_export(tmp_path))
    key = f"segment-logs/src1/{DAYS[1]}/part-1.gz"
    single = send(f"s3://{s3.bucket}/{key}")
    assert {r["source"] for r in records(single.stdout)} == {f"s3://{s3.bucket}/{key}"}
    # --since two days after the first folder: that folder ends a day before the window
    pruned = send("--since", "2025-11-29", "-o", "table", f"s3://{s3.bucket}/segment-logs")
    assert "lines read from 4 sources" in pruned.stderr
    assert "1 day folders pruned" in pruned.stderr


@pytest.mark.slow
def test_more_than_a_thousand_objects_under_a_prefix_are_all_read_in_key_order(s3, tmp_path):
    keys = [f"many/{n:05d}.ndjson" for n in range(1100)]  # a listing page holds 1,000
    for n, key in enumerate(keys):
        s3.put_object(Bucket=s3.bucket, Key=key, Body=ndjson(track(message_id=str(n))))
    result = send("--include", "*.ndjson", f"s3://{s3.bucket}/many/")
    assert result.exit_code == 0, result.output
    sources = [r["source"] for r in records(result.stdout)]
    assert list(dict.fromkeys(sources)) == [f"s3://{s3.bucket}/{k}" for k in keys]
    assert len({r["message_id"] for r in records(result.stdout)}) == 1100


@pytest.mark.slow
def test_hidden_objects_and_globs_apply_to_a_bucket_walk(s3):
    for key in ("a/x.ndjson", "a/.tmp.ndjson", ".cache/y.ndjson", "a/skip.json"):
        s3.put_object(Bucket=s3.bucket, Key=key, Body=ndjson(track()))
    result = send("--exclude", "*.json", f"s3://{s3.bucket}")
    assert {r["source"] for r in records(result.stdout)} == {f"s3://{s3.bucket}/a/x.ndjson"}


@pytest.mark.slow
def test_a_missing_bucket_fails_in_one_line_before_anything_is_sent(s3, fake, tmp_path):
    (tmp_path / "local.ndjson").write_bytes(ndjson(track()))
    env = {"RETENTLY_API_KEY": TEST_KEY, "RETENTLY_BASE_URL": fake.url}
    argv = ["send", "-c", str(EXAMPLE_CONFIG), "--no-ledger", str(tmp_path / "local.ndjson")]
    result = run(*argv, "s3://no-such-bucket-here/segment-logs", env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "retently: s3://no-such-bucket-here/segment-logs: no such bucket, prefix or object"
    ]
    assert fake.requests == []
    missing = send(f"s3://{s3.bucket}/no/such/prefix")
    assert missing.exit_code == 2 and "no such bucket, prefix or object" in missing.stderr


@pytest.mark.slow
def test_access_denied_fails_in_one_line(s3, moto_endpoint, monkeypatch, tmp_path):
    put_all(s3, segment_export(tmp_path))
    iam = boto3.client("iam", endpoint_url=moto_endpoint)
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    deny = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="deny-s3", PolicyDocument=json.dumps(deny))
    aws_env(monkeypatch, tmp_path, moto_endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    monkeypatch.setattr("moto.settings.INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto enforces IAM
    result = send(f"s3://{s3.bucket}/segment-logs")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"retently: s3://{s3.bucket}/segment-logs: access denied"
    assert key["SecretAccessKey"] not in result.output


@pytest.mark.slow
def test_a_corrupt_object_is_one_record_naming_its_key_and_the_run_goes_on(s3):
    def export(name):
        return gzip.compress(ndjson(*(track(message_id=f"{name}{n}") for n in range(200))))

    cut = export("a")
    s3.put_object(Bucket=s3.bucket, Key="logs/a.gz", Body=cut[: len(cut) // 2])
    s3.put_object(Bucket=s3.bucket, Key="logs/b.gz", Body=export("b"))
    result = send(f"s3://{s3.bucket}/logs")
    got = records(result.stdout)
    assert result.exit_code == 1
    [failure] = [r for r in got if r["outcome"] == "failed"]
    assert (
        failure["source"] == f"s3://{s3.bucket}/logs/a.gz" and failure["reason"] == "corrupt_gzip"
    )
    read = {r["message_id"] for r in got if r["source"].endswith("b.gz")}
    assert len(read) == 200


class _CuttingProxy(ThreadingHTTPServer):
    """Passes requests to the S3 server, one per connection, but cuts the body of every GET of
    ``cut`` halfway and drops the connection: a transfer that breaks mid-stream."""

    daemon_threads = True

    def __init__(self, upstream_port: int, cut: str):
        self.upstream_port, self.cut = upstream_port, cut
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=10)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        size = answer.getheader("Content-Length") if self.command == "HEAD" else len(data)
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "GET" and self.server.cut in self.path:
            data = data[: len(data) // 2]
        self.wfile.write(data)
        self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward


@pytest.mark.slow
def test_an_object_cut_mid_transfer_is_one_unreadable_record_and_the_run_goes_on(
    s3, moto_endpoint, monkeypatch, tmp_path
):
    for name in ("a.ndjson", "cut.ndjson", "z.ndjson"):
        body = ndjson(*(track(message_id=f"{name}{n}") for n in range(300)))
        s3.put_object(Bucket=s3.bucket, Key=f"logs/{name}", Body=body)
    proxy = _CuttingProxy(int(moto_endpoint.rsplit(":", 1)[1]), "cut.ndjson")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        aws_env(monkeypatch, tmp_path, f"http://127.0.0.1:{proxy.server_address[1]}")
        result = send(f"s3://{s3.bucket}/logs")
    finally:
        proxy.shutdown()
        proxy.server_close()
    got = records(result.stdout)
    assert result.exit_code == 1, result.output
    unreadable = [r for r in got if r["reason"] == "unreadable"]
    assert [r["source"] for r in unreadable] == [f"s3://{s3.bucket}/logs/cut.ndjson"]
    per_source = {}
    for r in got:
        if r["outcome"] == "dry_run":
            per_source.setdefault(r["source"].rsplit("/", 1)[1], set()).add(r["message_id"])
    assert len(per_source["a.ndjson"]) == len(per_source["z.ndjson"]) == 300
    assert len(per_source.get("cut.ndjson", ())) < 300


def test_without_the_s3_extra_a_url_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    result = send("s3://bucket/segment-logs")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "retently: s3://bucket/segment-logs: reading URLs needs the s3 extra: "
        "pip install 'retently-cli[s3]'"
    )


def test_a_file_url_reads_as_the_local_path(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(ndjson(track()))
    result = send(f"file://{tmp_path}")
    assert {r["source"] for r in records(result.stdout)} == {str(tmp_path / "a.ndjson")}
    gone = send(f"file://{tmp_path}/missing")
    assert gone.exit_code == 2 and "does not exist" in gone.stderr
