#!/usr/bin/env python3
# Renders the conformance matrix of docs/debian-vm.md from the rows scripts/conformance.sh
# printed here (HOST_ROWS) and in the emulated Debian 12 (VM_ROWS): replaces what lies
# between the file's "matrix:begin" and "matrix:end" markers. Run by
# `scripts/debian-vm.sh matrix`, not by hand.
import datetime
import os
import re
import sys

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def rows(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("ROW|"):
            parts = line.split("|", 4)
            parts += [""] * (5 - len(parts))
            _, name, status, secs, note = parts
            out[name] = (status, secs, note.strip())
    return out


def cell(r):
    if r is None:
        return "—"
    status, secs, _ = r
    mark = {"pass": "pass", "FAIL": "**FAIL**", "no": "no", "n/a": "n/a"}.get(status, status)
    return f"{mark} ({secs} s)" if status in ("pass", "FAIL", "no") else mark


def esc(s):
    return s.replace("|", "/")


def main(path):
    host, vm = rows(os.environ.get("HOST_ROWS", "")), rows(os.environ.get("VM_ROWS", ""))
    order = [n for n in vm if n != "total"] + [n for n in host if n not in vm and n != "total"]
    lines = [
        BEGIN,
        "",
        f"Generated {datetime.date.today()} by `scripts/debian-vm.sh matrix`. "
        f"Here: this machine, kernel {os.environ.get('HOST_KERNEL', '?')}, hybrid cgroups, "
        "modules built in (none loadable), a private `kanted` started by the script. "
        "Debian 12: Debian's kernel and packages under "
        f"{os.environ.get('QEMU_VERSION', 'qemu')} (TCG, one host thread, 2 vCPUs, 3 GiB), "
        "pure cgroup v2, `kanted.service` under systemd.",
        "",
        "| step | here | Debian 12 (TCG) | what the Debian 12 run showed | here |",
        "|---|---|---|---|---|",
    ]
    for n in order:
        h, v = host.get(n), vm.get(n)
        lines.append(
            f"| {n} | {cell(h)} | {cell(v)} | {esc(v[2] if v else '')} | {esc(h[2] if h else '')} |"
        )
    for label, r in (("Debian 12 VM", vm.get("total")), ("here", host.get("total"))):
        if r:
            lines.append("")
            lines.append(f"Total, {label}: {cell(r)}: {esc(r[2])}")
    lines += ["", END]
    text = open(path).read()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)


if __name__ == "__main__":
    main(sys.argv[1])
