#!/usr/bin/env python3
"""Checks the rules that keep Weir's layout navigable (ARCHITECTURE.md, "Layout"):

1. No import cycles between files inside a crate. A file's imports are the `crate::`,
   `super::` and `self::` paths it names (in `use` lines and in code), resolved to the
   file that defines the module they lead to. A module that only *declares* its children
   (`mod x;`) or re-exports them (`pub use self::x::*`) does not import them for this
   check; anything else a parent takes from a child, while the child takes from the
   parent, is a cycle.
2. Dependencies point one way: crds -> store -> runtime -> components -> the weir binary
   -> tests. The runtime depends on no component; a component depends on another only
   for its pure core (default-features = false, never its adapters).

3. Files stay readable: none over 900 lines, and the binary's own src/ (CLI and wiring)
   under 1,500 lines in all.

Exit 1 with every violation listed. Cargo itself refuses cycles between crates.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = {
    "weir": ROOT / "src",
    "weir-crds": ROOT / "crds/src",
    "weir-store": ROOT / "store/src",
    "weir-runtime": ROOT / "runtime/src",
    "weir-controllers": ROOT / "controllers/src",
    "weir-xds": ROOT / "xds-server/src",
    "weir-metrics-adapter": ROOT / "metrics-adapter/src",
    "weir-tests": ROOT / "tests/src",
}
LAYER = {
    "weir-crds": 0,
    "weir-store": 1,
    "weir-runtime": 2,
    "weir-controllers": 3,
    "weir-xds": 3,
    "weir-metrics-adapter": 3,
    "weir": 4,
    "weir-tests": 5,
}
MANIFEST = {
    "weir": ROOT / "Cargo.toml",
    "weir-crds": ROOT / "crds/Cargo.toml",
    "weir-store": ROOT / "store/Cargo.toml",
    "weir-runtime": ROOT / "runtime/Cargo.toml",
    "weir-controllers": ROOT / "controllers/Cargo.toml",
    "weir-xds": ROOT / "xds-server/Cargo.toml",
    "weir-metrics-adapter": ROOT / "metrics-adapter/Cargo.toml",
    "weir-tests": ROOT / "tests/Cargo.toml",
}

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{", re.S)


def modules(src: Path):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        found[tuple(parts)] = f
    return found


def strip(text: str) -> str:
    """The code without comments and string literals."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def inline_test_modules(code: str) -> str:
    """Drops `#[cfg(test)] mod tests { ... }` bodies: tests may use anything."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        i = j
    out.append(code[i:])
    return "".join(out)


def expand_groups(code: str):
    """Paths named in `use a::b::{c, d::e}` groups, one level deep or more."""
    paths = []
    for m in USE_GROUP_RE.finditer(code):
        head = m.group(1) + m.group(2)
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        inner = code[m.end(): j - 1]
        for item in re.split(r",(?![^{]*\})", inner):
            item = item.strip()
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*", item)
            if name and name.group(0) != "self":
                paths.append(head + "::" + name.group(0))
    return paths


def resolve(here, path: str, mods):
    """The module file a path leads to, from the module `here`."""
    parts = path.split("::")
    base = list(here)
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
    best = tuple(base)
    for k in range(1, len(parts) + 1):
        candidate = tuple(base + parts[:k])
        if candidate in mods:
            best = candidate
        else:
            break
    return best


def cycles(crate: str, src: Path):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for here, f in mods.items():
        code = inline_test_modules(strip(f.read_text()))
        # Re-exports of one's own descendants are not imports.
        code_for_edges = re.sub(r"pub\s+use\s+self::[^;]*;", "", code)
        paths = [m.group(1) + m.group(2) for m in PATH_RE.finditer(code_for_edges)]
        paths += expand_groups(code_for_edges)
        for p in paths:
            target = resolve(list(here), p, mods)
            if target != here and target in mods:
                edges[here].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
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
                out.append(sorted(str(mods[c].relative_to(ROOT)) for c in comp))

    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in index:
            visit(v)
    return out


# A component's adapters may use another component's only where this says why.
SANCTIONED = {
    ("weir-controllers", "weir-metrics-adapter"):
        "the pod autoscaler's `--metrics-source rules` runs the metrics adapter's rule engine in-process",
}


def dependency_problems():
    problems = []
    workspace = (ROOT / "Cargo.toml").read_text()
    for crate, manifest in MANIFEST.items():
        text = manifest.read_text()
        deps = text.split("[dependencies]", 1)[-1].split("\n[", 1)[0]
        features = text.split("[features]", 1)[-1].split("\n[", 1)[0] if "[features]" in text else ""
        for other, layer in LAYER.items():
            if other == crate:
                continue
            line = next((l for l in deps.splitlines() if l.split("=")[0].strip() == other), None)
            if line is None:
                continue
            if layer < LAYER[crate] or crate == "weir":
                continue
            if layer > LAYER[crate]:
                problems.append(f"{crate} depends on {other}: dependencies point the other way")
                continue
            # A sibling component: its pure core only (its adapters off by default).
            ws = workspace.split(f"\n{other} = ", 1)[1].split("\n", 1)[0]
            core_only = "default-features = false" in ws and not re.search(r"(?<!default-)features\s*=", line)
            adapters = f'"{other}/' in features
            if not core_only or (adapters and (crate, other) not in SANCTIONED):
                problems.append(f"{crate} uses {other}'s adapters; share through weir-runtime instead")
    return problems


MAX_FILE_LINES = 900
MAX_BINARY_LINES = 1500


def size_problems():
    problems = []
    for f in sorted(ROOT.rglob("*.rs")):
        if {"target", ".venv", ".git"} & set(f.relative_to(ROOT).parts):
            continue
        lines = len(f.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            problems.append(f"{f.relative_to(ROOT)}: {lines} lines; split it by concern (at most {MAX_FILE_LINES})")
    binary = sum(len(f.read_text().splitlines()) for f in CRATES["weir"].rglob("*.rs"))
    if binary > MAX_BINARY_LINES:
        problems.append(f"src/: {binary} lines; the binary is CLI and wiring (at most {MAX_BINARY_LINES}), move logic into its component")
    return problems


def main():
    problems = dependency_problems() + size_problems()
    for crate, src in CRATES.items():
        for comp in cycles(crate, src):
            problems.append(f"{crate}: import cycle between " + ", ".join(comp))
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layout: no import cycles in {len(CRATES)} crates; dependencies point one way; file sizes within bounds")


if __name__ == "__main__":
    main()
