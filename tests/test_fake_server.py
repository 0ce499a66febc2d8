"""Tests for the fake Retently server, over real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from retently_cli.fake_server import DEFAULT_CAMPAIGNS, FakeRetently, plausible_email

KEY = "test-key-123"
NPS = "5e1f9a3c2b7d4e0012ab34cd"
CSAT = "61ab2c9d8e7f6a0011bc45de"
BAD_KEY_BODY = (
    b'{"message":"Please check your API Key to make sure it\'s valid.","code":401,"data":null}'
)
AUTH = {"Authorization": f"api_key={KEY}"}


@pytest.fixture
def srv():
    with FakeRetently(api_key=KEY, slow_seconds=0.3) as server:
        yield server


@pytest.fixture
def client(srv):
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=5) as c:
        yield c


def survey(*emails, campaign=NPS, **extra):
    return {"campaign": campaign, "subscribers": [{"email": e} for e in emails], **extra}


# -- basics -----------------------------------------------------------------------------------
def test_url_is_loopback_with_a_real_port(srv):
    assert srv.url.startswith("http://127.0.0.1:") and srv.port > 0


def test_ping(client):
    r = client.get("/api/v2/ping")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "OK", "code": 200, "data": {"account": "fake"}}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "api_key=wrong"},
        {"Authorization": f"Bearer {KEY}"},
        {"X-Api-Key": KEY},
    ],
)
def test_bad_or_missing_key_gets_exact_401(srv, headers):
    r = httpx.get(srv.url + "/api/v2/ping", headers=headers)
    assert r.status_code == 401
    assert r.content == BAD_KEY_BODY


def test_key_in_query_is_refused_counted_and_never_logged(srv):
    r = httpx.get(srv.url + "/api/v2/ping", params={"api_key": KEY}, headers=AUTH)
    assert r.status_code == 401 and r.content == BAD_KEY_BODY
    assert srv.key_in_query == 1
    method, path, status, _, headers = srv.requests[-1]
    assert (method, path, status) == ("GET", "/api/v2/ping", 401)
    assert KEY not in repr(srv.requests)


def test_request_log_redacts_authorization(srv, client):
    client.get("/api/v2/ping")
    ((method, path, status, at, headers),) = srv.requests
    assert (method, path, status) == ("GET", "/api/v2/ping", 200)
    assert isinstance(at, float)
    assert headers["Authorization"] == "REDACTED"


def test_keep_alive_reuses_one_connection(srv, client):
    for _ in range(3):
        assert client.get("/api/v2/ping").headers.get("connection") != "close"
    assert len(srv.requests) == 3


def test_campaigns_default_listing(client):
    body = client.get("/api/v2/campaigns").json()
    assert body["code"] == 200 and body["data"] is None
    by_id = {c["id"]: c for c in body["campaigns"]}
    for cid, metric, name in [
        (NPS, "NPS", "Post-purchase NPS"),
        (CSAT, "CSAT", "Support CSAT"),
        ("63cd4e5f6a7b8c0022de56ef", "CES", "Onboarding effort"),
    ]:
        c = by_id[cid]
        assert (c["metric"], c["name"], c["isActive"]) == (metric, name, True)
        assert (c["type"], c["channel"]) == ("transactional", "email")
        assert c["templateId"]
    assert by_id["6a0000000000000000000001"]["isActive"] is False
    assert by_id["6a0000000000000000000001"]["type"] == "regular"
    assert len(body["campaigns"]) == len(DEFAULT_CAMPAIGNS)


def test_custom_campaigns():
    mine = [
        {
            "id": "c1",
            "name": "Mine",
            "isActive": True,
            "templateId": "t1",
            "metric": "STAR",
            "type": "transactional",
            "channel": "link",
        }
    ]
    with FakeRetently(api_key=KEY, campaigns=mine) as srv:
        body = httpx.get(srv.url + "/api/v2/campaigns", headers=AUTH).json()
        assert body["campaigns"] == mine
        assert (
            httpx.post(
                srv.url + "/api/v2/survey", headers=AUTH, json=survey("a@b.co", campaign=NPS)
            ).status_code
            == 400
        )


def test_unknown_path_is_404_envelope(client):
    r = client.get("/api/v2/nope")
    assert r.status_code == 404 and r.json()["code"] == 404


# -- surveys ----------------------------------------------------------------------------------
def test_survey_accepted_and_recorded(srv, client):
    sub = {
        "email": "john.doe@example.com",
        "first_name": "John",
        "last_name": "Doe",
        "company": "ACME",
        "tags": ["foo", "bar"],
        "properties": [
            {"label": "plan", "type": "string", "value": "Pro"},
            {"label": "signup_date", "type": "date", "value": "2020-01-30T00:00:00Z"},
            {"label": "untyped", "value": "x"},
        ],
    }
    r = client.post("/api/v2/survey", json={"campaign": NPS, "subscribers": [sub], "delay": 0})
    assert r.status_code == 200
    assert r.json() == {
        "message": "OK",
        "code": 200,
        "data": {"john.doe@example.com": {"status": "created"}},
    }
    (rec,) = srv.surveys
    assert rec["campaign"] == NPS and rec["email"] == "john.doe@example.com"
    assert rec["subscriber"] == sub and rec["delay"] == 0
    assert isinstance(rec["received_at"], float)
    assert srv.survey_count() == 1 and srv.survey_count(campaign=NPS) == 1
    assert srv.survey_count(campaign=CSAT) == 0
    assert srv.survey_count(email="john.doe@example.com") == 1


def test_delay_absent_is_recorded_as_none(srv, client):
    client.post("/api/v2/survey", json=survey("a@b.co", "c@d.co"))
    assert [s["delay"] for s in srv.surveys] == [None, None]
    assert srv.survey_count(email="c@d.co") == 1


def test_created_then_updated(srv, client):
    assert client.post("/api/v2/survey", json=survey("a@b.co")).json()["data"] == {
        "a@b.co": {"status": "created"}
    }
    data = client.post("/api/v2/survey", json=survey("a@b.co", "new@b.co", campaign=CSAT)).json()
    assert data["data"] == {"a@b.co": {"status": "updated"}, "new@b.co": {"status": "created"}}
    assert srv.survey_count(email="a@b.co") == 2


@pytest.mark.parametrize(
    "body, words",
    [
        (b"not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        ({"subscribers": [{"email": "a@b.co"}]}, "campaign is required"),
        (survey("a@b.co", campaign="nope"), "Unknown campaign"),
        ({"campaign": NPS}, "subscribers is required"),
        ({"campaign": NPS, "subscribers": {"email": "a@b.co"}}, "must be a list"),
        ({"campaign": NPS, "subscribers": []}, "must not be empty"),
        ({"campaign": NPS, "subscribers": [{"first_name": "X"}]}, "email is required"),
        ({"campaign": NPS, "subscribers": ["a@b.co"]}, "JSON object"),
        (survey("a@b.co", "nope"), "invalid email"),
        (survey("a@@b.co"), "invalid email"),
        (survey("@b.co"), "invalid email"),
        (survey("a@bco"), "invalid email"),
        (survey("a b@b.co"), "invalid email"),
        (survey("a@b.co", delay=-1), "delay"),
        (survey("a@b.co", delay="1"), "delay"),
        (survey("a@b.co", delay=1.5), "delay"),
        (survey("a@b.co", delay=True), "delay"),
        (survey("a@b.co", delay=None), "delay"),
        (
            {
                "campaign": NPS,
                "subscribers": [
                    {
                        "email": "a@b.co",
                        "properties": [{"label": "n", "type": "number", "value": 1}],
                    }
                ],
            },
            "invalid type 'number'",
        ),
        (
            {"campaign": NPS, "subscribers": [{"email": "a@b.co", "properties": {"n": 1}}]},
            "properties",
        ),
        ({"campaign": NPS, "subscribers": [{"email": "a@b.co", "tags": "foo, bar"}]}, "tags"),
        (survey("a@b.co", "x@y.co", "A@b.co"), "duplicate email"),
    ],
)
def test_invalid_survey_is_rejected_whole(srv, client, body, words):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post("/api/v2/survey", headers={"Content-Type": "application/json"}, **kwargs)
    assert r.status_code == 400
    payload = r.json()
    assert payload["code"] == 400 and payload["data"] is None
    assert words in payload["message"]
    assert srv.surveys == []


def test_one_bad_subscriber_rejects_the_batch(srv, client):
    r = client.post("/api/v2/survey", json=survey("ok@b.co", "bad"))
    assert r.status_code == 400 and "subscribers[1]" in r.json()["message"]
    assert srv.surveys == []


def test_valid_delay_and_property_types_accepted(srv, client):
    props = [
        {"label": t, "type": t, "value": "1"}
        for t in ("string", "date", "integer", "boolean", "collection")
    ]
    body = {"campaign": NPS, "delay": 3, "subscribers": [{"email": "a@b.co", "properties": props}]}
    assert client.post("/api/v2/survey", json=body).status_code == 200
    assert srv.surveys[0]["delay"] == 3


@pytest.mark.parametrize(
    "email, ok",
    [
        ("a@b.co", True),
        ("first.last+tag@sub.example.org", True),
        ("a@b", False),
        ("a@.co", False),
        ("a@b.", False),
        ("", False),
        ("a@b.co\n", False),
        (None, False),
    ],
)
def test_plausible_email(email, ok):
    assert plausible_email(email) is ok


def test_per_email_failures_mode():
    with FakeRetently(api_key=KEY, per_email_failures=True) as srv:
        body = {
            "campaign": NPS,
            "subscribers": [
                {"email": "good@b.co"},
                {"email": "bad"},
                {"first_name": "NoEmail"},
                {"email": "p@b.co", "properties": [{"label": "x", "type": "nope", "value": 1}]},
            ],
        }
        r = httpx.post(srv.url + "/api/v2/survey", headers=AUTH, json=body)
        assert r.status_code == 200
        data = r.json()["data"]
        assert data["good@b.co"] == {"status": "created"}
        assert data["bad"]["status"] == "failed" and "invalid email" in data["bad"]["reason"]
        assert data["subscribers[2]"]["status"] == "failed"
        assert data["p@b.co"]["status"] == "failed" and "type" in data["p@b.co"]["reason"]
        assert [s["email"] for s in srv.surveys] == ["good@b.co"]
        # batch-level problems are still a 400
        r = httpx.post(
            srv.url + "/api/v2/survey", headers=AUTH, json=survey("a@b.co", campaign="x")
        )
        assert r.status_code == 400


# -- rate limit -------------------------------------------------------------------------------
@pytest.mark.slow
def test_rate_limit_429_with_retry_after_records_nothing():
    with (
        FakeRetently(api_key=KEY, rate_limit_per_minute=3, window_seconds=1.0) as srv,
        httpx.Client(base_url=srv.url, headers=AUTH) as c,
    ):
        # unauthenticated requests do not count against the limit
        assert httpx.get(srv.url + "/api/v2/ping").status_code == 401
        codes = [c.post("/api/v2/survey", json=survey(f"u{i}@b.co")).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/api/v2/survey", json=survey("late@b.co"))
        assert r.status_code == 429
        assert r.json() == {"message": "Too many requests", "code": 429, "data": None}
        assert int(r.headers["Retry-After"]) >= 1
        assert srv.rate_limited == 2
        assert srv.survey_count() == 3 and srv.survey_count(email="late@b.co") == 0
        time.sleep(1.05)  # the window slides on
        assert c.post("/api/v2/survey", json=survey("late@b.co")).status_code == 200


# -- faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["500", "502", "503", "501", "408", "429", "401"])
def test_status_fault_then_success(srv, client, fault):
    srv.fault_retry_after = 7
    srv.inject(fault)
    r = client.post("/api/v2/survey", json=survey("a@b.co"))
    assert r.status_code == int(fault)
    assert r.json()["code"] == int(fault)
    if fault == "429":
        assert r.headers["Retry-After"] == "7"
    if fault == "401":
        assert r.content == BAD_KEY_BODY
    assert srv.surveys == []
    assert client.post("/api/v2/survey", json=survey("a@b.co")).status_code == 200
    assert srv.survey_count() == 1


def test_injected_faults_are_consumed_in_order_and_by_path(srv, client):
    srv.inject(503, times=2, path="/api/v2/survey")
    srv.inject("500")
    assert client.get("/api/v2/ping").status_code == 500  # only the unfiltered fault matches
    assert client.get("/api/v2/ping").status_code == 200
    codes = [client.post("/api/v2/survey", json=survey("a@b.co")).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_unknown_fault_is_refused(srv):
    with pytest.raises(ValueError):
        srv.inject("teapot")


def test_slow_fault_delays_then_processes(srv, client):
    srv.inject("slow")
    t0 = time.monotonic()
    r = client.post("/api/v2/survey", json=survey("a@b.co"))
    assert time.monotonic() - t0 >= 0.3
    assert r.status_code == 200 and srv.survey_count() == 1


def test_drop_before_records_nothing(srv, client):
    srv.inject("drop_before")
    with pytest.raises(httpx.TransportError):
        client.post("/api/v2/survey", json=survey("a@b.co"))
    assert srv.surveys == []
    assert srv.requests[-1][2] is None
    assert client.post("/api/v2/survey", json=survey("a@b.co")).status_code == 200


def test_drop_after_records_but_client_never_hears(srv, client):
    srv.inject("drop_after")
    with pytest.raises(httpx.TransportError):
        client.post("/api/v2/survey", json=survey("a@b.co"))
    assert srv.survey_count(email="a@b.co") == 1
    # the retry is seen as an update: the first attempt did land
    r = client.post("/api/v2/survey", json=survey("a@b.co"))
    assert r.json()["data"] == {"a@b.co": {"status": "updated"}}


def test_random_faults_are_seeded():
    def run(seed):
        with (
            FakeRetently(
                api_key=KEY, fault_rate=0.5, fault_choices=["503", "500"], seed=seed
            ) as srv,
            httpx.Client(base_url=srv.url, headers=AUTH) as c,
        ):
            return [c.get("/api/v2/ping").status_code for _ in range(20)]

    first = run(7)
    assert first == run(7)
    assert set(first) == {200, 500, 503}


def test_fault_rate_can_change_at_runtime(srv, client):
    srv.fault_choices = ["502"]
    srv.fault_rate = 1.0
    assert client.get("/api/v2/ping").status_code == 502
    srv.fault_rate = 0.0
    assert client.get("/api/v2/ping").status_code == 200


def test_reset_forgets_everything(srv, client):
    client.post("/api/v2/survey", json=survey("a@b.co"))
    srv.inject("500")
    srv.reset()
    assert srv.surveys == [] and srv.requests == [] and srv.rate_limited == 0
    r = client.post("/api/v2/survey", json=survey("a@b.co"))
    assert r.status_code == 200 and r.json()["data"]["a@b.co"]["status"] == "created"


def test_concurrent_requests_are_all_recorded(srv):
    def send(i):
        with httpx.Client(base_url=srv.url, headers=AUTH) as c:
            for j in range(10):
                assert c.post("/api/v2/survey", json=survey(f"u{i}-{j}@b.co")).status_code == 200

    threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.survey_count() == 50 and len(srv.requests) == 50


# -- lifecycle --------------------------------------------------------------------------------
def test_stop_is_prompt_with_a_sleeping_handler_and_idle_keepalive():
    srv = FakeRetently(api_key=KEY, slow_seconds=30).start()
    idle = httpx.Client(base_url=srv.url, headers=AUTH)
    assert idle.get("/api/v2/ping").status_code == 200  # leaves a keep-alive connection open
    srv.inject("slow")
    errors = []

    def slow_call():
        try:
            httpx.get(srv.url + "/api/v2/ping", headers=AUTH, timeout=10)
        except httpx.TransportError as exc:
            errors.append(exc)

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.0
    t.join(timeout=2)
    assert not t.is_alive() and errors
    idle.close()
    srv.stop()  # idempotent


def test_restart_after_stop():
    srv = FakeRetently(api_key=KEY)
    with srv:
        assert httpx.get(srv.url + "/api/v2/ping", headers=AUTH).status_code == 200
    with srv:
        assert httpx.get(srv.url + "/api/v2/ping", headers=AUTH).status_code == 200


@pytest.mark.slow
def test_command_line_server_logs_without_the_key():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retently_cli.fake_server", "--port", "0", "--api-key", KEY],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("Fake Retently listening on http://127.0.0.1:")
        assert line.endswith("(API key from --api-key)")
        url = line.split()[4]
        assert httpx.get(url + "/api/v2/ping", headers=AUTH).status_code == 200
        assert httpx.get(url + "/api/v2/ping", params={"api_key": KEY}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "GET /api/v2/ping 200" in err and "GET /api/v2/ping 401" in err
    assert KEY not in line + out + err
