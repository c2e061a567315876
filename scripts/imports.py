#!/usr/bin/env python3
"""Checks that no crate's modules import each other in a circle. Prints each circle found;
exit code 1 if any.

A module's use of its own submodules is not counted: a parent that declares children may use
and re-export them (the crate root and `mod.rs` hubs), and the children use what the parent
defines. What is counted is every use of a sibling, a cousin or an ancestor — so `executor`
using `group` while `group` uses `executor` is a circle, as is `cli` using the subcommands while
they use `cli`.

Usage: scripts/imports.py CRATE_DIR...  (default: every crate under crates/)
"""
import pathlib
import re
import sys

USE = re.compile(r"(?<![\w:])(crate|super|self|\w+)((?:::\w+)+)")


def modules(src: pathlib.Path) -> dict:
    """Module path (tuple) -> file, for every module file under src."""
    found = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = tuple(rel.parts)
        if parts in (("lib",), ("main",)):
            parts = ()
        elif parts[-1] == "mod":
            parts = parts[:-1]
        found[parts] = f
    return found


def strip_comments(text: str) -> str:
    """The code without comments and string literals."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


USE_STMT = re.compile(r"\buse\s+([^;]+);")


def expand(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if tree.count("{") != tree.count("}") or not re.fullmatch(r"[\w:{},*]+", tree.replace(" as ", "")):
        return []  # not a use tree (prose that happens to read "use … ;")
    if brace < 0:
        return [tree.split(" as ")[0]]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    out = []
    for part in filter(None, parts):
        for p in expand(part):
            out.append(prefix + p if p != "self" else prefix.rstrip(":"))
    return out


def paths(text: str) -> list:
    """Every path the code names: those of `use` trees, expanded, and those written inline."""
    found = []
    for stmt in USE_STMT.findall(text):
        for p in expand(stmt):
            head, _, rest = p.partition("::")
            found.append((head, "::" + rest if rest else ""))
    found += USE.findall(USE_STMT.sub("", text))
    return found


def edges(mods: dict) -> dict:
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip_comments(f.read_text())
        # Test modules may reach anywhere; only what the code itself uses counts.
        text = text.split("#[cfg(test)]")[0]
        for root, rest in paths(text):
            path = tuple(p for p in rest.split("::") if p)
            if root == "crate":
                target = path
            elif root not in ("super", "self"):
                # A path from a child module of this one (`use child::Item;`), else another
                # crate's or a type's (`tokio::spawn`, `Vec::new`): not an edge.
                if m + (root,) not in mods:
                    continue
                target = m + (root,) + path
            elif root == "self":
                target = m + path
            else:
                base = m[:-1]
                while path and path[0] == "super":
                    path, base = path[1:], base[:-1]
                target = base + path
            # The longest prefix that is a module.
            dest = next(target[:n] for n in range(len(target), -1, -1) if target[:n] in mods)
            if dest[: len(m)] != m:
                graph[m].add(dest)
    return graph


def circles(graph: dict) -> list:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main() -> int:
    roots = [pathlib.Path(a) for a in sys.argv[1:]] or sorted(pathlib.Path("crates").glob("*"))
    bad = 0
    for crate in roots:
        src = crate / "src"
        if not src.is_dir():
            continue
        for c in circles(edges(modules(src))):
            bad += 1
            print(f"{crate.name}: modules import each other in a circle: "
                  + " -> ".join("::".join(m) for m in c))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
