#!/usr/bin/env python3
"""Fails if the module's files import each other in a circle, or if any of
them is over MAX_LINES lines (`make lint`).

src/ is built in layers whose arrows point one way (docs/ARCHITECTURE.md):
commands -> engine -> block -> store -> wire -> api, and so on. An arrow is
a file naming another file's module: `crate::a::b` anywhere in the code (a
`use` line or a path in an expression), `super::x`, `self::x`, or a `pub use`
of a child module. Declaring a child module (`mod line;`) is not an arrow:
the parent only holds it. Tests (`#[cfg(test)] mod tests`) are not read.

Prints each circle as `a.rs -> b.rs -> a.rs`, and each file over the
limit, and exits 1; otherwise prints the count of files and arrows, and
the largest files, and exits 0. Lines are counted whole (comments and
tests included): a file that long is split, its tests into a child file
(`line.rs` -> `line/tests.rs`). Python 3 standard library only.
"""

import os
import re
import sys

# No file in src/ is longer (issue 22): one job per file.
MAX_LINES = 600
# How many of the largest files a run prints.
LARGEST = 5

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}", re.S)


def module_of(path):
    """`src/block/mod.rs` -> ('block',); `src/block/line.rs` -> ('block', 'line')."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def code_of(path):
    """The file's code without comments, strings and its test module."""
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r'c?"(\\.|[^"\\])*"', '""', text)
    text = re.sub(r"//[^\n]*", "", text)
    return text


def line_count(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(d, n)
                files[module_of(p)] = p
    name = lambda m: os.path.relpath(files[m], os.path.dirname(ROOT))
    lines = sorted(((line_count(p), name(m)) for m, p in files.items()), reverse=True)
    too_long = [(n, f) for n, f in lines if n > MAX_LINES]
    for n, f in too_long:
        print(f"{f}: {n} lines, over the {MAX_LINES} a file in src/ may have: split it")
    edges = {m: set() for m in files}

    def resolve(here, base, parts):
        if base == "crate":
            start = ()
        elif base == "self":
            start = here
        else:
            start = here[:-1]
        full = start + tuple(parts)
        # The longest prefix that is a file: the rest are items in it.
        for k in range(len(full), -1, -1):
            if full[:k] in files:
                return full[:k]
        return None

    for m, p in files.items():
        code = code_of(p)
        paths = []
        for g in GROUP.finditer(code):
            prefix = [x for x in g.group(2).split("::") if x]
            for item in g.group(3).split(","):
                first = item.strip().split("::")[0].split(" ")[0]
                if first:
                    paths.append((g.group(1), prefix + ([] if first == "self" else [first])))
        for u in PATH.finditer(code):
            paths.append((u.group(1), [x for x in u.group(2).split("::") if x]))
        for base, parts in paths:
            target = resolve(m, base, parts)
            if target is not None and target != m:
                edges[m].add(target)
        # A folder module (and the crate root) names its own children
        # without a prefix: `line::Line`, `store::commit`.
        for child in files:
            if len(child) == len(m) + 1 and child[: len(m)] == m:
                if re.search(r"(?<![:\w])" + re.escape(child[-1]) + r"::", code):
                    edges[m].add(child)
    # Circles: strongly connected components of more than one file.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    if out:
        for comp in out:
            members = set(comp)
            # One cycle through the component, for the message.
            start = min(comp)
            path, seen, v = [start], {start}, start
            while True:
                nxt = sorted(w for w in edges[v] if w in members)
                w = next((x for x in nxt if x == start), None) or next(
                    (x for x in nxt if x not in seen), nxt[0])
                path.append(w)
                if w == start or w in seen:
                    break
                seen.add(w)
                v = w
            print("import circle in src/: " + " -> ".join(name(x) for x in path))
            for a in sorted(comp):
                for b in sorted(edges[a] & members):
                    print(f"  {name(a)} -> {name(b)}")
    if out or too_long:
        return 1
    print(f"src/: {len(files)} files, {sum(map(len, edges.values()))} arrows, no circle")
    largest = ", ".join(f"{f} {n}" for n, f in lines[:LARGEST])
    print(f"largest (lines; at most {MAX_LINES}): {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
