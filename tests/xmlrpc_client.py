#!/usr/bin/env python3
"""Drive buildd-agent like Launchpad's buildd-manager, with Python's stdlib
xmlrpc.client (the same marshaller launchpad-buildd and Launchpad use).

Usage: xmlrpc_client.py BUILDER_URL CHROOT_SHA1 CHROOT_URL USER PASSWORD BUILD_ID

It asserts the shapes buildd-manager relies on, then prints one JSON object
that tests/e2e_agent_test.go checks. Exit status 1 with a message on
stderr if an assertion fails.
"""

import base64
import hashlib
import json
import sys
import time
import urllib.request
import xmlrpc.client


def main():
    builder_url, chroot_sha1, chroot_url, user, password, build_id = sys.argv[1:7]
    # buildd-manager's proxy: <builder_url>/rpc, allow_none.
    proxy = xmlrpc.client.ServerProxy(builder_url + "/rpc", allow_none=True)
    out = {}

    out["echo"] = proxy.echo("Hello World", 1, None, [1, {"a": b"\x00bin"}])
    info = proxy.info()
    assert isinstance(info, list) and len(info) == 3, info
    assert info[0] == "1.0", info
    assert isinstance(info[1], str), info
    assert "e2etest" in info[2], info
    out["info"] = info

    status = proxy.status()
    assert status["builder_status"] == "BuilderStatus.IDLE", status
    out["idle_status"] = status

    faults = {}
    for name, call in [
        ("unknown", lambda: proxy.nosuchmethod()),
        ("abort_idle", lambda: proxy.abort()),
        ("clean_idle", lambda: proxy.clean()),
        ("proxy_info_idle", lambda: proxy.proxy_info()),
        ("ensurepresent_arity", lambda: proxy.ensurepresent(chroot_sha1)),
    ]:
        try:
            call()
        except xmlrpc.client.Fault as f:
            faults[name] = [f.faultCode, f.faultString]
        else:
            raise AssertionError(name + " did not fault")
    out["faults"] = faults

    # What LP's sendFileToWorker does: ensurepresent with the librarian URL.
    present = proxy.ensurepresent(chroot_sha1, chroot_url, user, password)
    assert present[0] is True, present
    out["ensurepresent"] = present
    out["ensurepresent_again"] = proxy.ensurepresent(chroot_sha1, chroot_url, user, password)
    out["ensurepresent_nourl"] = proxy.ensurepresent("0" * 40, None, None, None)

    # With the chroot present, an empty build id is the next check.
    try:
        proxy.build("", "e2etest", chroot_sha1, {}, {})
    except xmlrpc.client.Fault as f:
        faults["build_bad_buildid"] = [f.faultCode, f.faultString]
    else:
        raise AssertionError("build with an empty build id did not fault")

    out["unknownbuilder"] = proxy.build(build_id, "nonexistentbuilder", chroot_sha1, {}, {})
    out["unknownsum"] = proxy.build(build_id, "e2etest", "1" * 40, {}, {})

    args = {
        "series": "noble",
        "arch_tag": "amd64",
        "build_url": "https://launchpad.test/~e2e/+snap/s/+build/1",
        "output": "hello from python\n",
        "sleep": 0.5,
        "proxy_url": "http://e2euser:e2e-proxy-secret@127.0.0.1:9/",
        "archives": ["deb http://ftpmaster.internal/ubuntu noble main"],
        "trusted_keys": [base64.b64encode(b"key").decode()],
        "fast_cleanup": True,
        "builder_constraints": None,
    }
    res = proxy.build(build_id, "e2etest", chroot_sha1, {"chroot.tar": chroot_sha1}, args)
    assert res == ["BuilderStatus.BUILDING", build_id], res
    out["build"] = res

    busy = None
    try:
        proxy.build(build_id + "-other", "e2etest", chroot_sha1, {}, args)
    except xmlrpc.client.Fault as f:
        busy = [f.faultCode, f.faultString]
    assert busy is not None, "build while BUILDING did not fault"
    out["build_busy"] = busy

    seen = []
    building = None
    deadline = time.time() + 60
    while True:
        status = proxy.status()
        state = status["builder_status"]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "BuilderStatus.BUILDING":
            assert status["build_id"] == build_id, status
            # LP reads status["logtail"].data and decodes it as UTF-8.
            assert isinstance(status["logtail"], xmlrpc.client.Binary), status
            building = {"keys": sorted(status), "logtail": status["logtail"].data.decode("utf-8", "replace")}
            out["proxy_info"] = proxy.proxy_info()
        if state == "BuilderStatus.WAITING":
            break
        assert time.time() < deadline, "build did not finish"
        time.sleep(0.05)
    out["states_seen"] = seen
    out["building"] = building
    out["waiting"] = status

    files = {}
    for name, sha1 in status["filemap"].items():
        with urllib.request.urlopen(builder_url + "/filecache/" + sha1) as resp:
            data = resp.read()
        assert hashlib.sha1(data).hexdigest() == sha1, name
        files[name] = {"sha1": sha1, "size": len(data)}
    out["files"] = files
    with urllib.request.urlopen(builder_url + "/filecache/buildlog") as resp:
        out["buildlog"] = resp.read().decode("utf-8", "replace")

    out["clean"] = proxy.clean()

    # Wrong types from Python, as a buggy master would send them.
    for name, call in [
        ("ensurepresent_url_int", lambda: proxy.ensurepresent(chroot_sha1, 1, None, None)),
        ("build_args_nil", lambda: proxy.build(build_id, "e2etest", chroot_sha1, {}, None)),
        ("build_filemap_list", lambda: proxy.build(build_id, "e2etest", chroot_sha1, [chroot_sha1], {})),
    ]:
        try:
            call()
        except xmlrpc.client.Fault as f:
            faults[name] = [f.faultCode, f.faultString]
        else:
            raise AssertionError(name + " did not fault")

    # Abort as buildd-manager does it: abort, then poll until WAITING.
    res = proxy.build(build_id + "-abort", "e2etest", chroot_sha1, {}, {"series": "noble", "sleep": 600})
    assert res == ["BuilderStatus.BUILDING", build_id + "-abort"], res
    assert proxy.abort() == "BuilderStatus.ABORTING"
    deadline = time.time() + 60
    while True:
        status = proxy.status()
        if status["builder_status"] == "BuilderStatus.WAITING":
            break
        assert status["builder_status"] == "BuilderStatus.ABORTING", status
        assert time.time() < deadline, "abort did not finish"
        time.sleep(0.05)
    out["aborted"] = status
    assert proxy.clean() == "BuilderStatus.IDLE"
    out["final"] = proxy.status()
    json.dump(out, sys.stdout, default=repr, sort_keys=True)


if __name__ == "__main__":
    main()
