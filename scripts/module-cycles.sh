#!/usr/bin/env bash
# Reports dependency circles between the source files of a crate: file A depends on file B when
# A names a path into B (`use crate::b::…`, `crate::b::f(…)`, `super::…`, `self::…`, or a path
# through one of A's own child modules). Circles are found as strongly connected components of
# that graph; for each one the script prints a shortest circle and the lines that make it.
#
# A circle between files means neither can be understood, tested or moved without the other;
# layers (HTTP-free engines, config, shared state, the API) should only point one way.
#
# Not counted: comments and doc links, `mod x;` declarations, and — unless --tests is given —
# `#[cfg(test)] mod … { … }` blocks (test code may reach up a layer; it is not compiled in).
# The paths are read textually, without macro expansion or name resolution: a path's longest
# prefix naming a module decides which file it points into, so a re-export counts as a
# dependency on the re-exporting file.
#
# Usage: scripts/module-cycles.sh [--tests] [--allow DIR/]... CRATE_DIR
#   --allow DIR/   circles whose files all lie under src/DIR/ are reported but do not fail
#   exit status:   0 no circle (outside the allowed directories), 1 circles, 2 usage error
# Example (CI): scripts/module-cycles.sh crates/keep-server
set -euo pipefail

tests=0
allow=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) tests=1; shift ;;
    --allow) allow+=("${2:?--allow needs a directory such as api/}"); shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
crate="${1:?usage: scripts/module-cycles.sh [--tests] [--allow DIR/]... CRATE_DIR}"
if [ ! -d "$crate/src" ]; then
  echo "error: $crate/src is not a directory" >&2
  exit 2
fi

exec python3 - "$crate/src" "$tests" "${allow[@]}" <<'PY'
import os
import re
import sys
from collections import deque

src, with_tests, allowed = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ROOTS = ("lib.rs", "main.rs")


def module_path(rel):
    """`a/b.rs` and `a/b/mod.rs` are module a::b; lib.rs is the crate root."""
    parts = rel[:-3].split("/")
    if parts[-1] == "mod" or (len(parts) == 1 and rel in ROOTS):
        parts = parts[:-1]
    return tuple(parts)


files = {}
for dirpath, _, names in os.walk(src):
    for n in names:
        if n.endswith(".rs"):
            rel = os.path.relpath(os.path.join(dirpath, n), src).replace(os.sep, "/")
            files[module_path(rel)] = rel


def strip_comments_and_strings(text):
    """Blanks comments and string/char literals (keeping line breaks) so only code is read."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1:i] or " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or text.startswith("'\\u{", i):
            j = text.find("'", i + 1) + 1
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def blank_test_modules(code):
    """Blanks `#[cfg(test)] mod name { … }` blocks."""
    for m in reversed(list(re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", code))):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():j]) + code[j:]
    return code


def use_tree_paths(tree):
    """Expands a use tree (`a::{b, c::{d, e}}`) into its paths."""
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for i, ch in enumerate(tree):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "{" and depth == 1:
            prefix, inner = tree[:i], tree[i + 1:tree.rindex("}")]
            parts, d, start = [], 0, 0
            for j, c2 in enumerate(inner):
                d += {"{": 1, "}": -1}.get(c2, 0)
                if c2 == "," and d == 0:
                    parts.append(inner[start:j])
                    start = j + 1
            parts.append(inner[start:])
            for p in parts:
                if p:
                    for sub in use_tree_paths(p):
                        yield prefix + sub
            return
    yield re.sub(r"\bas\b.*", "", tree)


def resolve(segments, here, children):
    """The module a path points into (absolute), or None when it leaves the crate."""
    if not segments:
        return None
    head, rest = segments[0], list(segments[1:])
    if head == "crate":
        base = []
    elif head in ("self", "super"):
        base = list(here)
        while segments and segments[0] in ("self", "super"):
            if segments[0] == "super":
                base = base[:-1]
            segments = segments[1:]
        rest = list(segments)
    elif head in children:
        base, rest = list(here), list(segments)
    else:
        return None
    path = base + [s for s in rest if s != "*"]
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in files:
            return tuple(path[:k])
    return None


edges = {}  # (from_rel, to_rel) -> first line that makes it
for mod, rel in files.items():
    with open(os.path.join(src, rel), encoding="utf-8") as f:
        code = strip_comments_and_strings(f.read())
    if not with_tests:
        code = blank_test_modules(code)
    children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code, re.M))
    # Inline modules (`mod tests { … }`): `super::` inside one is the file's own module.
    inline = []  # (start, end, name)
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        inline.append((m.start(), j, m.group(1)))

    def scope(off):
        return mod + tuple(name for (a, b, name) in inline if a <= off < b)

    found = []  # (offset, segments)
    for m in re.finditer(r"\buse\s+([^;]*);", code):
        for p in use_tree_paths(m.group(1)):
            found.append((m.start(), p.lstrip(":").split("::")))
    heads = "|".join(["crate", "super", "self"] + sorted(children))
    for m in re.finditer(r"(?<![\w:])((?:" + heads + r")(?:::" + IDENT + r")+)", code):
        found.append((m.start(), m.group(1).split("::")))
    for off, segs in found:
        here = scope(off)
        target = resolve(segs, here, children if here == mod else set())
        if target is None or target == mod or target == ():
            continue
        key = (rel, files[target])
        line = code.count("\n", 0, off) + 1
        edges[key] = min(edges.get(key, line), line)

graph = {rel: sorted({b for (a, b) in edges if a == rel}) for rel in files.values()}

# Tarjan's strongly connected components (iterative).
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
for root in sorted(graph):
    if root in index:
        continue
    work = [(root, 0)]
    while work:
        v, i = work.pop()
        if i == 0:
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
        if i < len(graph[v]):
            work.append((v, i + 1))
            w = graph[v][i]
            if w not in index:
                work.append((w, 0))
            elif w in on:
                low[v] = min(low[v], index[w])
            continue
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))
        if work:
            parent = work[-1][0]
            low[parent] = min(low[parent], low[v])


def shortest_cycle(comp):
    """A shortest circle through the component's first file, by breadth-first search."""
    inside, start = set(comp), comp[0]
    prev, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        for w in graph[v]:
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


failing = 0
for comp in sorted(sccs):
    tolerated = any(all(f.startswith(a) for f in comp) for a in allowed)
    failing += not tolerated
    label = "allowed circle" if tolerated else "circle"
    print(f"{label}: {len(comp)} files: {', '.join(comp)}")
    cyc = shortest_cycle(comp)
    print("  shortest: " + " -> ".join(cyc))
    for a, b in sorted(k for k in edges if k[0] in comp and k[1] in comp):
        print(f"  {a}:{edges[(a, b)]} -> {b}")
print(f"{len(files)} files, {len(edges)} edges, {len(sccs)} circles ({failing} failing)")
sys.exit(1 if failing else 0)
PY
