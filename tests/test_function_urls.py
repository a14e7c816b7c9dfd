"""Function URLs: the payload 2.0 event (the token never reaches the function), the response
mapping, 502/504/429/403/404, and bad requests answered 4xx."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
import urllib.error
import urllib.request

import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.server.triggers.urls import http_event, http_response


def echo(event):
    return {"statusCode": 201, "headers": {"x-seen": "yes", "content-type": "application/json"},
            "cookies": ["a=b"], "body": json.dumps(event)}


def fetch(url, data=None, headers=None, method=None, timeout=60):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_the_event_strips_the_token_and_is_payload_2_0(conn, server):
    f = faas.function(echo, name="echo_url")
    u = f.url(auth="token")
    assert u.url == f"{server.url}/url/echo_url/" and f.url(auth="token").id == u.id
    status, headers, body = fetch(u.url + "a/b?x=1&x=2&y=&token=" + server.token, data=b"hello",
                                  headers={"Authorization": f"Bearer {server.token}", "X-Two": "v",
                                           "Cookie": "c1=1; c2=2"}, method="POST")
    assert status == 201 and headers["x-seen"] == "yes" and headers["Set-Cookie"] == "a=b"
    event = json.loads(body)
    assert server.token not in body.decode()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert "authorization" not in event["headers"] and event["headers"]["x-two"] == "v"
    assert event["cookies"] == ["c1=1", "c2=2"] and "cookie" not in event["headers"]
    assert event["body"] == "hello" and event["isBase64Encoded"] is False
    http = event["requestContext"]["http"]
    assert http["method"] == "POST" and http["path"] == "/a/b" and http["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"]
    assert fetch(u.url)[0] == 403                                   # no token
    rid = headers["x-amzn-RequestId"]
    assert faas.Invocation.from_id(rid)._row["triggered_by"] == "url"
    # each request it answered is a firing of the trigger (403s are not: they invoked nothing)
    trigger = next(t for t in faas.triggers(function="echo_url") if t.id == u.id)
    assert trigger.fired == 1 and trigger.last_fired_at is not None
    fetch(u.url, headers={"Authorization": f"Bearer {server.token}"})
    assert next(t for t in faas.triggers(function="echo_url") if t.id == u.id).fired == 2


def test_auth_none_binary_bodies_and_plain_results(conn, server):
    def plain(event):
        if event["rawPath"] == "/text":
            return "just text"
        if event["rawPath"] == "/bin":
            return {"statusCode": 200, "body": event["body"], "isBase64Encoded": event["isBase64Encoded"]}
        if event["rawPath"] == "/bad":
            return {"statusCode": "teapot"}
        if event["rawPath"] == "/boom":
            raise KeyError("nope")
        return [1, 2]

    f = faas.function(plain, name="plain_url")
    u = f.url(auth="none")
    assert fetch(u.url + "list")[:1] == (200,) and json.loads(fetch(u.url + "list")[2]) == [1, 2]
    status, headers, body = fetch(u.url + "text")
    assert status == 200 and body == b"just text" and headers["Content-Type"] == "application/json"
    raw = bytes(range(256))
    status, _, body = fetch(u.url + "bin", data=raw, method="PUT")
    assert status == 200 and body == raw
    assert fetch(u.url + "bad")[0] == 502
    status, _, body = fetch(u.url + "boom")
    assert status == 502 and json.loads(body)["errorType"] == "KeyError"
    with pytest.raises(faas.InvalidParameter, match="already has a function URL"):
        f.url(auth="token")


def test_timeouts_throttles_unknown_and_disabled(conn, server):
    def slow(event):
        time.sleep(float(event["queryStringParameters"]["s"]))
        return "ok"

    f = faas.function(slow, name="slow_url", timeout=1, concurrency=1)
    u = f.url(auth="none")
    assert fetch(u.url + "?s=3")[0] == 504
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(fetch, u.url + "?s=0.9")
        wait_for(lambda: [r for r in faas.invocations(function="slow_url", status="running")],
                 what="the first request running")
        second = pool.submit(fetch, u.url + "?s=0")
        codes = sorted([first.result()[0], second.result()[0]])
    assert codes == [200, 429]
    assert fetch(f"{server.url}/url/no_such_function/")[0] == 404
    u.disable()
    assert fetch(u.url + "?s=0")[0] == 404
    with pytest.raises(faas.InvalidParameter, match="auth="):
        f.url(auth="iam")


def test_pure_mapping_rules():
    event = http_event(function="f", method="GET", path="/", query="token=secret&a=1",
                       headers=[("Authorization", "Bearer secret"), ("A", "1"), ("a", "2")],
                       body=b"\xff\x00", source_ip="127.0.0.1", host="h:1", protocol="HTTP/1.1",
                       now=0, strip_token=True)
    assert event["rawQueryString"] == "a=1" and event["headers"] == {"a": "1,2"}
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\xff\x00"
    assert http_response("succeeded", b'{"statusCode": 204}', None)[0] == 204
    assert http_response("succeeded", b'{"k": 1}', None)[2] == b'{"k": 1}'
    assert http_response("timed_out", None, {"errorType": "x"})[0] == 504
    assert http_response("throttled", None, None)[0] == 429
    assert http_response("failed", None, None)[0] == 502
    assert http_response("succeeded", b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}', None)[0] == 502
