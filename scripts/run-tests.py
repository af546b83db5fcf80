#!/usr/bin/env python3
"""Runs the test binaries a cargo build with `--tests --message-format=json`
listed, one after another, as `cargo test --no-fail-fast` would, but without
holding cargo's lock on target/ (scripts/test.sh).

Usage: scripts/run-tests.py BUILD.json [ARGS…]   (ARGS go to every binary)

Why not `cargo test`: it keeps target/ locked for the whole run, so clippy had
to check the workspace in a target directory of its own, building every build
script, proc macro and their dependencies a second time (891 s of CPU against
192 s beside the build, measured). Each binary runs as cargo runs it: from its
package's directory, with CARGO_MANIFEST_DIR and CARGO_PKG_NAME set. Doc tests
are not binaries: scripts/test.sh runs them with cargo afterwards.
"""

import json
import os
import subprocess
import sys
import time


def binaries(build_json):
    """(package, kind order, target name, source, executable, package dir)."""
    found = {}
    with open(build_json) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact":
                continue
            exe = msg.get("executable")
            if not exe or not msg["profile"]["test"]:
                continue
            target = msg["target"]
            if "example" in target["kind"] or "bench" in target["kind"]:
                continue
            pkg_dir = os.path.dirname(msg["manifest_path"])
            pkg = package_name(msg["package_id"])
            kind = target["kind"][0]
            order = {"lib": 0, "bin": 1, "test": 2}.get(kind, 3)
            found[exe] = (pkg, order, target["name"], target["src_path"], exe, pkg_dir)
    return sorted(found.values())


def package_name(package_id):
    """The name in a package id: `path+file:///…/tests#kante-integration@0.1.0`,
    or `path+file:///…/kante-api#0.1.0` when it is the directory's name."""
    url, _, frag = package_id.partition("#")
    if "@" in frag:
        return frag.split("@", 1)[0]
    return url.rstrip("/").rsplit("/", 1)[-1]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: run-tests.py BUILD.json [ARGS…]")
    build_json, args = sys.argv[1], sys.argv[2:]
    root = os.getcwd()
    bins = binaries(build_json)
    if not bins:
        sys.exit(f"{build_json}: no test binaries in this build's output")
    failed = []
    start = time.time()
    for pkg, order, name, src, exe, pkg_dir in bins:
        rel_src = os.path.relpath(src, pkg_dir)
        rel_exe = os.path.relpath(exe, root)
        what = f"unittests {rel_src}" if order < 2 else rel_src
        print(f"     Running {what} ({rel_exe})", flush=True)
        env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, CARGO_PKG_NAME=pkg)
        rc = subprocess.run([exe, *args], cwd=pkg_dir, env=env).returncode
        if rc != 0:
            failed.append(f"{pkg} ({what}): exit {rc}")
    took = int(time.time() - start)
    print(f"{len(bins)} test binaries in {took} s", flush=True)
    if failed:
        print("failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
