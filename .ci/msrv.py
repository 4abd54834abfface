#!/usr/bin/env python3
"""Checks the declared MSRV (`rust-version` in Cargo.toml) against the
locked dependency graph: every crate the library builds with, and every
crate the tests build with, must declare a `rust-version` no newer than
ours. (Our own code's use of the standard library is checked by clippy's
`incompatible_msrv` lint, which reads the same field.) Prints the crates
that set the floor. Exit status 1 when the declaration is too old."""

import json
import subprocess
import sys


def version(v):
    """`1.88` and `1.88.0` alike, as (major, minor, patch)."""
    parts = [int(x) for x in v.split(".")] if v else []
    return tuple((parts + [0, 0, 0])[:3])


def main():
    host = subprocess.run(
        ["rustc", "-vV"], capture_output=True, text=True, check=True
    ).stdout
    triple = next(l.split(": ")[1] for l in host.splitlines() if l.startswith("host: "))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--filter-platform", triple],
            capture_output=True, text=True, check=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = meta["workspace_members"]
    declared = {packages[m]["rust_version"] for m in members}
    if len(declared) != 1 or None in declared:
        print(f"msrv: the workspace members declare {declared}; want one rust-version")
        return 1
    declared = declared.pop()

    def walk(with_dev):
        seen, todo = set(), list(members)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds - {"dev"} or (with_dev and pid in members):
                    todo.append(dep["pkg"])
        return [packages[p] for p in seen if p not in members]

    failed = False
    for what, with_dev in (("library", False), ("tests", True)):
        deps = walk(with_dev)
        floor = max(deps, key=lambda p: version(p.get("rust_version")))
        need = floor.get("rust_version") or "any"
        setters = sorted(
            f"{p['name']} {p['version']}" for p in deps
            if p.get("rust_version") == floor.get("rust_version")
        )
        ok = version(need if need != "any" else "") <= version(declared)
        failed |= not ok
        print(f"msrv: {what}: {len(deps)} crates need Rust {need} ({', '.join(setters)}); "
              f"declared {declared}: {'ok' if ok else 'TOO OLD'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
