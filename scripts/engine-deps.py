#!/usr/bin/env python3
"""Who calls whom inside kante-engine: fails on a file pair calling both ways.

`Engine` is one type whose methods live in many files (`impl Engine` blocks);
this keeps the call graph between those files one-directional, as
ARCHITECTURE.md's "Engine layers" says. It reads every .rs file under
crates/kante-engine/src (not `testing/` or `behaviour_tests/`, not `*_tests.rs`, not
`#[cfg(test)]` modules), with comments and string literals blanked, and
draws an edge from file A to file B when A uses a function only B defines:

* an `Engine` method (defined in an `impl Engine` block of exactly one
  file) called as `self.f(`, `engine.f(`, `e.f(`, `.arc().f(`,
  `Engine::f(` or `Self::f(`;
* a free function (defined outside any impl, in exactly one file) named
  after its module's name (`config::expand(`, `crate::util::fmt_time`),
  `super::` or `crate::`, or imported from its module by a `use` line.

It exits 1 when two files call each other (a "two-way pair") or when the
files form a longer loop, unless the pair is allow-listed below.

Usage: scripts/engine-deps.py [--edges] [--root DIR]
  --edges  print every edge with the names it stands for.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

# Two-way pairs allowed for now: none. A new two-way pair is fixed by
# moving the function one side calls down a layer.
ALLOWED_PAIRS: set = set()


def blank(src):
    """Source with comments, strings and char literals replaced by spaces
    (newlines kept, so offsets and line numbers stay)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', src[i:i + 10])) and (
            i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")
        ):
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + re.sub(r"[^\n]", " ", src[i + 2:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
            out.append('""' + re.sub(r"[^\n]", " ", src[i + 2:j]))
            i = j
        elif c == "'" and (m := re.match(r"'(\\(x..|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", src[i:i + 12])):
            out.append("' '" + " " * (m.end() - 3))
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(src, open_at):
    depth = 0
    for j in range(open_at, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(src) - 1


def strip_tests(src):
    """Blank `#[cfg(test)]` items (test modules and test-only functions)."""
    while (m := re.search(r"#\[cfg\(test\)\]", src)):
        brace = src.find("{", m.end())
        semi = src.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            end = semi
        else:
            end = matching_brace(src, brace)
        src = src[: m.start()] + re.sub(r"[^\n]", " ", src[m.start(): end + 1]) + src[end + 1:]
    return src


TOKEN = re.compile(
    r"(?m)(?P<impl>^[ \t]*(?:unsafe[ \t]+)?impl\b[^{;]*\{)"
    r"|(?P<trait>^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?trait\b[^{;]*\{)"
    r"|(?P<mod>\bmod[ \t]+\w+[ \t]*\{)"
    r"|\bfn[ \t]+(?P<fn>\w+)"
    r"|(?P<open>\{)|(?P<close>\})"
)


def definitions(src):
    """(engine methods, free functions) defined at item level in `src`."""
    methods, free = set(), set()
    stack = []  # kinds of the open blocks: impl-engine, impl, trait, mod, block
    for m in TOKEN.finditer(src):
        if m.group("impl"):
            header = m.group("impl")
            generic = re.sub(r"<[^<>]*>", "", header)
            is_engine = re.search(r"\bimpl\s+Engine\s*\{", generic) is not None
            stack.append("impl-engine" if is_engine else "impl")
        elif m.group("trait"):
            stack.append("trait")
        elif m.group("mod"):
            stack.append("mod")
        elif m.group("fn"):
            if stack and stack[-1] == "impl-engine":
                methods.add(m.group("fn"))
            elif all(k == "mod" for k in stack):
                free.add(m.group("fn"))
        elif m.group("open"):
            stack.append("block")
        elif m.group("close"):
            if stack:
                stack.pop()
    return methods, free


def module_of(path):
    """The name a file's module is reached by: `instance/config.rs` is
    `config`, `instance/mod.rs` is `instance`, `lib.rs` is `crate`."""
    parts = path[:-3].split("/")
    if parts[-1] == "lib":
        return "crate"
    if parts[-1] == "mod":
        return parts[-2]
    return parts[-1]


RECEIVER = r"(?:\bself|\bengine|\b_engine|\be|\beng|\.arc\(\))\s*\.\s*"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", action="store_true")
    ap.add_argument(
        "--root",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kante-engine", "src"),
    )
    args = ap.parse_args()
    root = os.path.normpath(args.root)

    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.relpath(os.path.join(dirpath, name), root)
            if not name.endswith(".rs") or name.endswith("_tests.rs"):
                continue
            if path.split(os.sep)[0] in ("testing", "behaviour_tests"):
                continue
            with open(os.path.join(root, path), encoding="utf-8") as f:
                files[path.replace(os.sep, "/")] = strip_tests(blank(f.read()))

    method_home, free_home = defaultdict(set), defaultdict(set)
    for path, src in files.items():
        methods, free = definitions(src)
        for f in methods:
            method_home[f].add(path)
        for f in free:
            free_home[f].add(path)
    methods = {f: next(iter(h)) for f, h in method_home.items() if len(h) == 1}
    free = {f: next(iter(h)) for f, h in free_home.items() if len(h) == 1}

    edges = defaultdict(set)  # (caller, callee) -> names
    for path, src in files.items():
        for m in re.finditer(RECEIVER + r"(\w+)\s*(?:::<[^>]*>)?\s*\(", src):
            callee = methods.get(m.group(1))
            if callee and callee != path:
                edges[(path, callee)].add(m.group(1))
        for m in re.finditer(r"\b(?:Engine|Self)\s*::\s*(\w+)\b", src):
            callee = methods.get(m.group(1))
            if callee and callee != path:
                edges[(path, callee)].add(m.group(1))
        imported = set()
        for u in re.finditer(r"\buse\s+([^;]*);", src):
            words = set(re.findall(r"\w+", u.group(1)))
            for name in words:
                callee = free.get(name)
                if callee and callee != path and (module_of(callee) in words or "super" in words):
                    imported.add(name)
        for m in re.finditer(r"\b\w+\b", src):
            name = m.group(0)
            callee = free.get(name)
            if not callee or callee == path:
                continue
            q = re.search(r"(\w+)\s*::\s*$", src[max(0, m.start() - 80): m.start()])
            qualifier = q.group(1) if q else None
            # `module::f` or `super::f`; a bare name counts only if a `use`
            # line brought it from its module (a local of the same name, or
            # `fs::read` beside a `read` of ours, is no edge).
            if qualifier in (module_of(callee), "super", "crate", "self") or (
                qualifier is None and name in imported
            ):
                edges[(path, callee)].add(name)

    if args.edges:
        for (a, b), names in sorted(edges.items()):
            print(f"{a} -> {b}: {', '.join(sorted(names))}")

    failed = False
    allowed = []
    for (a, b), names in sorted(edges.items()):
        if a < b and (b, a) in edges:
            pair = frozenset((a, b))
            line = f"{a} <-> {b} ({', '.join(sorted(names))} | {', '.join(sorted(edges[(b, a)]))})"
            if pair in ALLOWED_PAIRS:
                allowed.append(line)
            else:
                print("two-way: " + line)
                failed = True

    # Longer loops: strongly connected components of the graph without the
    # allowed pairs' edges.
    graph = defaultdict(set)
    for (a, b) in edges:
        if frozenset((a, b)) not in ALLOWED_PAIRS:
            graph[a].add(b)
    for comp in sccs(graph):
        if len(comp) > 2:
            print("loop: " + " , ".join(sorted(comp)))
            failed = True

    for line in allowed:
        print("allowed (left to the backup/profile/volume rewrite): " + line)
    for pair in ALLOWED_PAIRS:
        a, b = sorted(pair)
        if not ((a, b) in edges and (b, a) in edges):
            print(f"note: {a} <-> {b} no longer calls both ways; drop it from ALLOWED_PAIRS")
    if failed:
        print("engine-deps: calls must go one way only (ARCHITECTURE.md, Engine layers)")
        return 1
    return 0


def sccs(graph):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


if __name__ == "__main__":
    sys.exit(main())
