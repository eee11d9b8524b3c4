#!/usr/bin/env python3
"""Loads a page in headless Chromium and prints, as JSON, what a reader of it would meet.

Usage: render-page.py FILE EXPRESSION
Prints {"errors": [...], "value": ...}: every console error, uncaught exception, failed load and
error logged while the page loaded (each a line of text), and what the JavaScript EXPRESSION
evaluated to once it had. Exit status 0 when the page loaded (whatever it held), 1 when it did not,
2 on bad usage. CHROMIUM names the browser (default: chromium).

It speaks the DevTools protocol over a pipe (--remote-debugging-pipe: fd 3 into the browser, fd 4
out of it, messages ended by NUL), so it needs no debugging port and no websocket library.
"""
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

if len(sys.argv) != 3 or not os.path.isfile(sys.argv[1]):
    print("usage: render-page.py FILE EXPRESSION (FILE an existing page)", file=sys.stderr)
    sys.exit(2)
page = "file://" + os.path.abspath(sys.argv[1])
expression = sys.argv[2]
browser = os.environ.get("CHROMIUM", "chromium")

into_read, into_write = os.pipe()
out_read, out_write = os.pipe()


def pipes_at_3_and_4():
    os.dup2(into_read, 3)
    os.dup2(out_write, 4)


profile = tempfile.mkdtemp(prefix="decryptd-chromium-")
process = subprocess.Popen(
    [browser, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
     "--no-first-run", "--no-default-browser-check", "--user-data-dir=" + profile, "about:blank"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    preexec_fn=pipes_at_3_and_4, pass_fds=(3, 4))
os.close(into_read)
os.close(out_write)

deadline = time.monotonic() + 90
buffer = b""
next_id = 0
events = []


def receive():
    """The next message from the browser."""
    global buffer
    while b"\0" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([out_read], [], [], left)[0]:
            raise TimeoutError("the browser did not answer within 90 s")
        chunk = os.read(out_read, 1 << 16)
        if not chunk:
            raise EOFError("the browser closed its pipe")
        buffer += chunk
    message, buffer = buffer.split(b"\0", 1)
    return json.loads(message)


def call(method, params=None, session=None):
    """Sends a command and returns its result; events that arrive meanwhile are kept."""
    global next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params or {}}
    if session:
        message["sessionId"] = session
    os.write(into_write, json.dumps(message).encode() + b"\0")
    while True:
        answer = receive()
        if answer.get("id") == next_id:
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})
        events.append(answer)


def wait_for(method):
    for event in events:
        if event.get("method") == method:
            return
    while True:
        event = receive()
        events.append(event)
        if event.get("method") == method:
            return


status = 0
try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        call(domain + ".enable", session=session)
    navigation = call("Page.navigate", {"url": page}, session=session)
    if navigation.get("errorText"):
        raise RuntimeError("the page did not load: " + navigation["errorText"])
    wait_for("Page.loadEventFired")
    value = call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append("log: " + params["entry"].get("text", ""))
        elif method == "Network.loadingFailed":
            errors.append("load failed: " + params.get("errorText", ""))
    print(json.dumps({"errors": errors, "value": value.get("result", {}).get("value")}))
    call("Browser.close")
except Exception as problem:  # noqa: BLE001 - any failure to load is reported the same way
    print(json.dumps({"errors": ["render-page: " + str(problem)], "value": None}))
    status = 1
finally:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(profile, ignore_errors=True)
sys.exit(status)
