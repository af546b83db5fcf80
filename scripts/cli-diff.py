#!/usr/bin/env python3
"""Walks every verb of Debian's `lxc` (5.0.2) and of `kante` through their
--help and writes docs/cli-vs-lxc.md: the verbs one has and the other has
not, and per shared verb the flags that differ. Usage:
    scripts/cli-diff.py [KANTE_BINARY] > docs/cli-vs-lxc.md
Global flags of lxc (--debug, --project, …) are listed once, not per verb."""

import os
import re
import subprocess
import sys
import tempfile

KANTE = sys.argv[1] if len(sys.argv) > 1 else "target/debug/kante"
ENV = dict(os.environ, HOME=tempfile.mkdtemp(), LC_ALL="C")
GLOBAL_LXC = {"--debug", "--force-local", "--help", "--project", "--quiet",
              "--sub-commands", "--verbose", "--version"}
GLOBAL_KANTE = {"--help", "--version"}


# What --help cannot show: flags kante accepts but refuses, and lxc flags
# left out on purpose. Kept by hand; check it when the CLI changes.
STILL_DIFFERENT = [
    "`console` attaches as lxc's does (raw terminal, Ctrl+a q detaches, the window "
    "size follows); `launch`/`start`/`restart --console` attach after the start and "
    "`stop --console` watches the shutdown, for one instance only, as in lxc.",
    "`--vm` (`launch`, `init`) and `console --type vga`: refused, Kante runs containers "
    "only; `image copy/info/show --vm` are not accepted for the same reason.",
    "`stop --stateful` (and `snapshot`/`restore --stateful`): sent to the server, which "
    "refuses them (no CRIU). `start --stateless`, `copy`/`move --stateless` are accepted: "
    "every start is stateless.",
    "`list --all-projects`: Kante has one project, `default`; the flag adds lxc's PROJECT "
    "column and lists every instance. `--target-project` (`copy`, `move`, `image copy`, "
    "`profile copy`) and the `project` verbs are absent: there is no other project.",
    "`--target` on `network create/show/get/set/unset`: a member's own keys, as in LXD. "
    "On `config`, `storage`, `network info` and `info`: not accepted. Kante's pools and "
    "server config are not member-specific and kanted does not forward `?target=` for "
    "them; a member's own config is reached by adding it as a remote (`kante config "
    "show h2:`). `copy`/`move --target`: not accepted (a copy is "
    "made on the member it reaches, files do not move between members yet; `cluster "
    "evacuate` moves instances off a member).",
    "`copy`/`move --allow-inconsistent`, `export --optimized-storage`, `image copy "
    "--copy-aliases/--mode`, `remote add --auth-type/--domain` (Candid/RBAC): not accepted.",
    "`move -c/-p/--no-profiles/-d` on one server: applied to the instance (one PUT) before "
    "the rename, put back if the rename fails; `-p` adds to the instance's profiles, as "
    "`copy -p` does.",
    "`cluster remove --force` asks for confirmation unless `--yes`, as lxc does; Kante's "
    "`cluster evacuate --action` and `launch --wait/--timeout`, `--description` on "
    "`network`/`storage`/`profile create` and `remote add --token` are Kante's own.",
]


def help_text(cmd, path):
    out = subprocess.run([cmd, *path, "--help"], env=ENV, capture_output=True,
                         text=True, timeout=20)
    return out.stdout + out.stderr


def section(text, names):
    """Lines of the first section whose header is one of `names`."""
    lines, on = [], False
    for line in text.splitlines():
        header = line.strip().rstrip(":")
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            on = header in names
            continue
        if on:
            lines.append(line)
    return lines


def subcommands(text, lxc):
    names = ["Available Commands"] if lxc else ["Commands"]
    out = []
    for line in section(text, names):
        m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\s", line)
        if m and m.group(1) != "help":
            out.append(m.group(1))
    return out


def flags(text, lxc):
    names = ["Flags"] if lxc else ["Options"]
    found = set()
    for line in section(text, names):
        m = re.match(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", line)
        if m:
            found.add(m.group(1))
    return found - (GLOBAL_LXC if lxc else GLOBAL_KANTE)


def walk(cmd, lxc, path=(), depth=0):
    text = help_text(cmd, list(path))
    verbs = {path: flags(text, lxc)}
    if depth < 2:
        for sub in subcommands(text, lxc):
            verbs.update(walk(cmd, lxc, path + (sub,), depth + 1))
    return verbs


def main():
    lxc = walk("lxc", True)
    kante = walk(KANTE, False)
    rows = []
    only_lxc = sorted(p for p in lxc if p and p not in kante)
    only_kante = sorted(p for p in kante if p and p not in lxc)
    for path in sorted(p for p in lxc if p and p in kante):
        missing = sorted(lxc[path] - kante[path])
        extra = sorted(kante[path] - lxc[path])
        if missing or extra:
            rows.append((" ".join(path), ", ".join(missing) or "—", ", ".join(extra) or "—"))
    print("# `kante` against `lxc` 5.0.2: what differs\n")
    print("Generated by `scripts/cli-diff.py` from both programs' `--help` (Debian's "
          "`lxd-client` 5.0.2 and this tree's `kante`); lxc's global flags "
          f"({', '.join(sorted(GLOBAL_LXC))}) are left out. Rerun it after a CLI change.\n")
    shared = len([p for p in lxc if p and p in kante])
    print(f"{shared} verbs are shared; {len(rows)} of them differ in flags.\n")
    print("## Verbs only lxc has\n")
    print(", ".join(f"`{' '.join(p)}`" for p in only_lxc) or "none")
    print("\n## Verbs only kante has\n")
    print(", ".join(f"`{' '.join(p)}`" for p in only_kante) or "none")
    print("\n## Shared verbs whose flags differ\n")
    print("| verb | lxc's flags kante lacks | kante's flags lxc lacks |")
    print("|---|---|---|")
    for verb, missing, extra in rows:
        print(f"| `{verb}` | {missing} | {extra} |")
    print("\n## Still different (beyond the flags)\n")
    for line in STILL_DIFFERENT:
        print(f"- {line}")


if __name__ == "__main__":
    main()
