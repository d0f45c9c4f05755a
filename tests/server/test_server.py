"""End-to-end tests of `ember serve` against a live server (started by tests/server/run.sh).

The official `openai` client, unmodified, drives chat (plain and streamed), completions,
the model list and an auth failure. Raw sockets check the SSE framing byte by byte,
queueing and per-client correctness with 16 concurrent streams, prompt-cache reuse, and
a table of hostile inputs after each of which the server must still be healthy.

Environment: EMBER_URL (http://127.0.0.1:PORT), EMBER_API_KEY, EMBER_CTX (slot context).
"""
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse

import pytest

URL = os.environ.get("EMBER_URL")
KEY = os.environ.get("EMBER_API_KEY", "")
N_CTX = int(os.environ.get("EMBER_CTX", "1024"))
pytestmark = pytest.mark.skipif(not URL, reason="EMBER_URL not set (use tests/server/run.sh)")

HOST, PORT = (urllib.parse.urlparse(URL).hostname, urllib.parse.urlparse(URL).port) if URL else (None, None)
GREEDY = {"temperature": 0, "max_tokens": 24}


def client(key=None):
    import openai
    return openai.OpenAI(base_url=URL + "/v1", api_key=key or KEY or "sk-no-key-required", max_retries=0)


def post(path, body, headers=None, timeout=60):
    """POSTs JSON (dict) or raw bytes; returns (status, headers, body bytes)."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + KEY}
    h.update(headers or {})
    conn.request("POST", path, data, h)
    r = conn.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    conn.close()
    return out


def healthy():
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    conn.request("GET", "/health")
    r = conn.getresponse()
    ok = r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    conn.close()
    return ok


def chat_body(text, **kw):
    return dict({"messages": [{"role": "user", "content": text}]}, **kw)


def sse_events(raw):
    """Splits an SSE body into its `data:` payloads, asserting the exact framing."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-80:]
    parts = raw.split(b"\n\n")
    assert parts[-1] == b""
    events = []
    for p in parts[:-1]:
        assert p.startswith(b"data: ") and b"\n" not in p, p[:80]
        events.append(p[6:].decode())
    return events


# ---- the openai client ---------------------------------------------------------------

def test_models_list():
    models = client().models.list()
    assert [m.id for m in models.data] == ["ember-test"]
    assert models.data[0].object == "model"


def test_chat_non_stream():
    r = client().chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hello."}], **GREEDY)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream():
    c = client()
    msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a fruit."}]
    full = c.chat.completions.create(model="x", messages=msgs, **GREEDY)
    chunks = list(c.chat.completions.create(model="x", messages=msgs, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
    assert len({ch.id for ch in chunks}) == 1


def test_content_parts():
    c = client()
    a = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi there"}], **GREEDY)
    b = c.chat.completions.create(model="x", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}], **GREEDY)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_completions():
    c = client()
    r = c.completions.create(model="x", prompt="Once upon a time", **GREEDY)
    assert r.object == "text_completion" and r.choices[0].text
    r2 = c.completions.create(model="x", prompt=["Once upon a time", "The sky is"], **GREEDY)
    assert len(r2.choices) == 2 and r2.choices[0].text == r.choices[0].text
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


def test_stop_strings():
    c = client()
    full = c.completions.create(model="x", prompt="1, 2, 3, 4,", temperature=0, max_tokens=16).choices[0].text
    assert len(full) > 4
    stop = full[2:4]
    cut = c.completions.create(model="x", prompt="1, 2, 3, 4,", temperature=0, max_tokens=16, stop=[stop])
    assert cut.choices[0].text == full[:full.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_repeats():
    c = client()
    kw = dict(model="x", prompt="Tell me a story", max_tokens=16, temperature=1.0, seed=1234,
              extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1})
    assert c.completions.create(**kw).choices[0].text == c.completions.create(**kw).choices[0].text


def test_auth_failure():
    import openai
    with pytest.raises(openai.AuthenticationError):
        client(key="wrong-key").models.list()
    status, _, body = post("/v1/chat/completions", chat_body("hi"), headers={"Authorization": ""})
    assert status == 401 and json.loads(body)["error"]["code"] == 401


def test_exceed_context():
    status, _, body = post("/v1/completions", {"prompt": "hello " * (2 * N_CTX)})
    err = json.loads(body)["error"]
    assert status == 400 and err["type"] == "exceed_context_size_error"
    assert err["n_ctx"] == N_CTX and err["n_prompt_tokens"] > N_CTX


def test_prompt_cache_reuse():
    system = "You are a helpful assistant who answers questions about geography. " * 4
    c = client()
    for q in ("What is the capital of Spain?", "What is the capital of Italy?"):
        r = c.chat.completions.create(model="x", messages=[{"role": "system", "content": system},
                                                           {"role": "user", "content": q}], **GREEDY)
    assert r.usage.prompt_tokens_details.cached_tokens > 40


# ---- raw SSE framing ---------------------------------------------------------------------

def test_sse_framing_bytes():
    status, headers, raw = post("/v1/chat/completions", chat_body(
        "Hi", stream=True, stream_options={"include_usage": True}, **GREEDY))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert objs[0]["choices"][0]["finish_reason"] is None
    assert all(o["object"] == "chat.completion.chunk" for o in objs)
    assert len({(o["id"], o["created"], o["model"]) for o in objs}) == 1
    for o in objs[1:-2]:
        assert set(o["choices"][0]["delta"]) == {"content"} and o["choices"][0]["finish_reason"] is None
    assert objs[-2]["choices"][0]["delta"] == {} and objs[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["total_tokens"] > 0


def test_sse_without_usage_and_completions_stream():
    _, _, raw = post("/v1/completions", {"prompt": "Once upon a time", "stream": True, **GREEDY})
    objs = [json.loads(e) for e in sse_events(raw)[:-1]]
    assert all(o["choices"] for o in objs) and objs[-1]["choices"][0]["finish_reason"]
    _, _, full = post("/v1/completions", {"prompt": "Once upon a time", **GREEDY})
    assert "".join(o["choices"][0]["text"] for o in objs) == json.loads(full)["choices"][0]["text"]


# ---- concurrency ---------------------------------------------------------------------------

def stream_text(body):
    status, _, raw = post("/v1/chat/completions", dict(body, stream=True), timeout=300)
    assert status == 200
    out = ""
    for e in sse_events(raw)[:-1]:
        ch = json.loads(e)["choices"]
        if ch:
            out += ch[0]["delta"].get("content") or ""
    return out


def test_16_concurrent_streams_match_solo_runs():
    topics = ["cats", "the sea", "rockets", "bread", "winter", "music", "trees", "rain",
              "coffee", "chess", "bees", "trains", "maps", "clocks", "snow", "owls"]
    bodies = [chat_body(f"Write one sentence about {t}.", temperature=0, max_tokens=20) for t in topics]
    solo = [stream_text(b) for b in bodies]
    got = [None] * len(bodies)

    def run(i):
        got[i] = stream_text(bodies[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert got == solo


def test_disconnect_mid_stream_frees_slot():
    # Fill every slot with long streams, drop the clients after the first bytes; a new
    # request must then be served at once, not after those generations would have ended.
    socks = []
    body = json.dumps({"prompt": "Write a very long story about a dragon.", "max_tokens": 900,
                       "temperature": 1.0, "seed": 7, "stream": True}).encode()
    for _ in range(4):
        s = socket.create_connection((HOST, PORT), timeout=30)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
        assert s.recv(64).startswith(b"HTTP/1.1 200")
        socks.append(s)
    for s in socks:
        s.close()
    t0 = time.time()
    status, _, _ = post("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "temperature": 0})
    assert status == 200 and time.time() - t0 < 15
    assert healthy()


# ---- hostile inputs --------------------------------------------------------------------------

def raw_request(data, read_timeout=15, slow=None):
    """Sends raw bytes (optionally in slow pieces), returns the status code or None when
    the server closed the connection without one."""
    s = socket.create_connection((HOST, PORT), timeout=read_timeout)
    try:
        if slow:
            for piece in slow:
                s.sendall(piece)
                time.sleep(1.0)
        else:
            # Send from a thread: the server may answer (413) and close before reading
            # the whole body, and the status line must still be read.
            def send():
                try:
                    s.sendall(data)
                except OSError:
                    pass
            threading.Thread(target=send, daemon=True).start()
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return int(buf.split()[1]) if buf.startswith(b"HTTP/1.") else None
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        s.close()


def http_bytes(path, body, method=b"POST", extra=b""):
    return (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n" + extra + b"\r\n" + body)


CHAT = b"/v1/chat/completions"
CMPL = b"/v1/completions"
HOSTILE = [
    ("truncated json", CHAT, b'{"messages":[{"role":"user","content":"hi"}', 400),
    ("not json", CHAT, b"hello world", 400),
    ("empty body", CHAT, b"", 400),
    ("top-level array", CHAT, b"[1,2,3]", 400),
    ("deep nesting", CHAT, b"[" * 200000 + b"]" * 200000, 400),
    ("deep object nesting", CHAT, b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
    ("huge number", CHAT, b'{"messages":[{"role":"user","content":"x"}],"max_tokens":1e999999}', 400),
    ("huge integer", CHAT, b'{"messages":[{"role":"user","content":"x"}],"max_tokens":123456789012345678901234567890}', 400),
    ("negative max_tokens", CHAT, b'{"messages":[{"role":"user","content":"x"}],"max_tokens":-5}', 400),
    ("messages wrong type", CHAT, b'{"messages":"hi"}', 400),
    ("message not object", CHAT, b'{"messages":[42]}', 400),
    ("missing messages", CHAT, b'{"model":"x"}', 400),
    ("empty messages", CHAT, b'{"messages":[]}', 400),
    ("role wrong type", CHAT, b'{"messages":[{"role":1,"content":"x"}]}', 400),
    ("temperature string", CHAT, b'{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}', 400),
    ("stream string", CHAT, b'{"messages":[{"role":"user","content":"x"}],"stream":"yes"}', 400),
    ("image part", CHAT, b'{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}', 400),
    ("n=2", CHAT, b'{"messages":[{"role":"user","content":"x"}],"n":2}', 400),
    ("too many stops", CHAT, b'{"messages":[{"role":"user","content":"x"}],"stop":' + json.dumps(["s"] * 40).encode() + b"}", 400),
    ("invalid utf-8", CHAT, b'{"messages":[{"role":"user","content":"\xff\xfe\xc0\xaf"}]}', 400),
    ("lone surrogate bytes", CMPL, b'{"prompt":"\xed\xa0\x80"}', 400),
    ("token id out of range", CMPL, b'{"prompt":[1,2,99999999]}', 400),
    ("prompt object", CMPL, b'{"prompt":{"a":1}}', 400),
    ("body over limit", CHAT, b'{"messages":[{"role":"user","content":"' + b"a" * (10 << 20) + b'"}]}', 413),
    ("unknown path", b"/v1/nothing", b"{}", 404),
    ("wrong method", CHAT, b"", 405),
]


@pytest.mark.parametrize("name,path,body,want", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input(name, path, body, want):
    method = b"GET" if name == "wrong method" else b"POST"
    status = raw_request(http_bytes(path, body, method))
    assert status == want
    assert healthy()


def test_hostile_huge_content_length():
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n"
           b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n{")
    assert raw_request(req) == 413
    assert healthy()


def test_hostile_garbage_request_line():
    assert raw_request(b"\x00\x01GARBAGE\r\n\r\n") in (400, None)
    assert healthy()


def test_hostile_short_body_then_close():
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(http_bytes(CHAT, b"{" * 10)[:-5].replace(b"Content-Length: 10", b"Content-Length: 500"))
    s.close()
    assert healthy()


def test_hostile_slowloris_body():
    # Headers promise 1000 bytes, the body trickles in and stops: the idle timeout
    # (--timeout 3 in run.sh) must close the connection rather than hold it forever.
    head = http_bytes(CHAT, b"x" * 1000)[:-1000]
    t0 = time.time()
    status = raw_request(None, read_timeout=30, slow=[head, b'{"mess', b"ages"])
    assert status is None and time.time() - t0 < 25
    assert healthy()


def test_hostile_slowloris_headers():
    t0 = time.time()
    status = raw_request(None, read_timeout=30, slow=[b"POST /v1/chat/completions HTTP/1.1\r\n", b"Host: x\r\n"])
    assert status in (None, 408) and time.time() - t0 < 25
    assert healthy()


def test_web_page_served():
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    conn.request("GET", "/")
    r = conn.getresponse()
    page = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert "/v1/chat/completions" in page and "<script" in page and "http" not in page.replace("http-equiv", "")


def test_ipv6_host():
    """--host takes a numeric IPv6 address; skipped where the machine has no IPv6 loopback."""
    import re
    import subprocess
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    cmd = [os.environ.get("EMBER_BIN", "build/ember"), "serve", "--host", "::1", "--port", "0", "-np", "1", "-c", "256"]
    if os.environ.get("EMBER_MODEL"):
        cmd += ["-m", os.environ["EMBER_MODEL"]]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in p.stderr:
            m = re.search(r"listening on http://\[::1\]:(\d+)", line)
            if m:
                port = int(m.group(1))
            if "ready" in line:
                break
        assert port, "no listening line"
        conn = http.client.HTTPConnection("::1", port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "Hello", "max_tokens": 4, "temperature": 0}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["usage"]["completion_tokens"] == 4
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0
