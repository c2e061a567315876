"""Fails if the workspace declares a rust-version older than one of its dependencies needs:
the declaration must say what the build really requires."""
import json
import subprocess
import sys
import tomllib

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)


def version(text):
    parts = [int(p) for p in (text or "0").split(".")]
    return tuple((parts + [0, 0])[:3])


ours = set(meta["workspace_members"])
with open(meta["workspace_root"] + "/Cargo.toml", "rb") as f:
    declared = version(tomllib.load(f)["workspace"]["package"]["rust-version"])
# Only what builds on Linux: resolve the dependency graph's nodes actually used.
used = {n["id"] for n in meta["resolve"]["nodes"]}
needed = max(
    (version(p.get("rust_version")), p["name"], p["version"])
    for p in meta["packages"]
    if p["id"] in used and p["id"] not in ours
)
if needed[0] > declared:
    print(
        f"error: the workspace declares rust-version {'.'.join(map(str, declared))}, "
        f"but {needed[1]} {needed[2]} needs {'.'.join(map(str, needed[0]))}",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"rust-version {'.'.join(map(str, declared))} covers every dependency")
