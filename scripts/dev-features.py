#!/usr/bin/env python3
"""Prints the features that workspace members' dev-dependencies turn on in
other members (`kante-engine/testing,…`), for `cargo build --features`.

`cargo test --workspace` unifies those features into the members it
builds; a plain `cargo build --workspace` does not, so without them the
test build compiles every member that depends on such a crate (and
kanted, kante, …) a second time. scripts/test.sh builds with them, so the
test build reuses what the first build made.
"""
import json
import subprocess
import sys

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = {p["name"] for p in meta["packages"]}
wanted = sorted(
    {
        f"{d['name']}/{f}"
        for p in meta["packages"]
        for d in p["dependencies"]
        if d["kind"] == "dev" and d["name"] in members
        for f in d["features"]
    }
)
print(",".join(wanted))
sys.exit(0)
