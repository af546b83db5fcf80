"""Debian's pylxd (python3-pylxd 2.2.10, which speaks of containers), unchanged, against kanted: LXD_DIR points it
at the daemon's socket, or PYLXD_ENDPOINT (with PYLXD_CERT, PYLXD_KEY and
PYLXD_PASSWORD) at its HTTPS listener. Run by tests/compat_pylxd.rs with the busybox image's
fingerprint as argv[1]; prints one `ok <step>` line per step, and any failed
check raises (non-zero exit)."""

import os
import sys

import pylxd


def step(name):
    print("ok", name, flush=True)


fp = sys.argv[1]
endpoint = os.environ.get("PYLXD_ENDPOINT")
if endpoint:
    # Over HTTPS with a client certificate the daemon does not know yet:
    # untrusted until the trust password makes it trusted.
    client = pylxd.Client(
        endpoint=endpoint,
        cert=(os.environ["PYLXD_CERT"], os.environ["PYLXD_KEY"]),
        verify=False,
    )
    assert not client.trusted, client.host_info
    assert client.host_info["auth"] == "untrusted", client.host_info
    client.authenticate(os.environ["PYLXD_PASSWORD"])
    assert client.host_info["auth"] == "trusted", client.host_info
else:
    client = pylxd.Client()
assert client.host_info["api_version"] == "1.0", client.host_info
assert client.trusted
step("connect")

assert client.images.exists(fp)
image = client.images.get(fp)
assert image.fingerprint == fp
step("images")

config = {
    "name": "py1",
    "source": {"type": "image", "fingerprint": fp},
    "config": {"limits.memory": "96MiB", "user.origin": "pylxd"},
}
inst = client.containers.create(config, wait=True)
assert client.containers.exists("py1")
inst.start(wait=True)
inst.sync()
assert inst.status == "Running", inst.status
step("create and start")

res = inst.execute(["cat", "/etc/hostname"])
assert res.exit_code == 0 and res.stdout == "py1\n", res
res = inst.execute(["sh", "-c", "echo err >&2; exit 4"])
assert res.exit_code == 4 and res.stderr == "err\n", res
res = inst.execute(["sh", "-c", "echo $GREETING"], environment={"GREETING": "hallo"})
assert res.stdout == "hallo\n", res
step("execute")

payload = bytes(range(256)) * 64
inst.files.put("/root/blob", payload)
assert inst.files.get("/root/blob") == payload
res = inst.execute(["wc", "-c", "/root/blob"])
assert res.stdout.split()[0] == str(len(payload)), res
inst.files.delete("/root/blob")
res = inst.execute(["test", "-e", "/root/blob"])
assert res.exit_code == 1, res
step("files")

assert inst.expanded_config["limits.memory"] == "96MiB"
inst.config["user.tier"] = "web"
inst.save(wait=True)
again = client.containers.get("py1")
assert again.config["user.tier"] == "web", again.config
state = again.state()
assert state.status == "Running" and state.processes >= 1, state.status
step("config and state")

inst.execute(["sh", "-c", "echo one > /root/f"])
snap = inst.snapshots.create("s1", wait=True)
assert [s.name for s in inst.snapshots.all()] == ["s1"]
inst.execute(["sh", "-c", "echo two > /root/f"])
inst.stop(wait=True)
snap.restore(wait=True)
inst.start(wait=True)
assert inst.execute(["cat", "/root/f"]).stdout == "one\n"
snap.delete(wait=True)
assert inst.snapshots.all() == []
step("snapshots")

profile = client.profiles.create("pyprof", config={"user.p": "1"}, devices={})
assert client.profiles.exists("pyprof")
inst.profiles = ["default", "pyprof"]
inst.save(wait=True)
assert client.containers.get("py1").expanded_config["user.p"] == "1"
inst.profiles = ["default"]
inst.save(wait=True)
profile.delete()
assert not client.profiles.exists("pyprof")
step("profiles")

try:
    client.containers.create({"name": "bad_name!", "source": {"type": "image", "fingerprint": fp}}, wait=True)
    raise AssertionError("a bad name was accepted")
except pylxd.exceptions.LXDAPIException as e:
    assert "bad_name!" in str(e), str(e)
assert not client.containers.exists("bad_name!")
step("bad input")

inst.stop(wait=True)
inst.delete(wait=True)
assert not client.containers.exists("py1")
assert client.containers.all() == []
step("stop and delete")
