#!/usr/bin/env python3
"""The settings tables of README.md (decryptd run) and docs/settings.md (every other command),
generated from the command line itself, so that they cannot drift from it.

Every option's help text comes from one declaration in the code (Sources/decryptd/Settings.swift and
the option groups beside it): "<meaning> [Allowed: ...] Env: VARIABLE. [Default: value.]".
ArgumentParser prints those declarations as JSON (--experimental-dump-help); this script turns
them into Markdown tables and writes them between the markers in the two files.

    scripts/settings-table.py [--binary PATH] [--check]

--check writes nothing and exits 1 when a file differs from what it would write (the test suite
runs this); without it the files are rewritten. Exit 2 on bad usage.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (file, marker name, commands), in the order the tables appear.
TARGETS = [
    (ROOT / "README.md", "run", ["run"]),
    (ROOT / "docs" / "settings.md", "others", ["reprocess", "report", "parked", "loadgen", "migrate", "decrypt", "dev-broker", "dev-wechat"]),
]


def options(binary, command):
    dumped = subprocess.run([binary, command, "--experimental-dump-help"], capture_output=True, text=True, check=True).stdout
    for argument in json.loads(dumped)["command"].get("arguments", []):
        names = [n["name"] for n in argument.get("names", []) if n["kind"] == "long"]
        if not names or names[0] in ("help", "version"):
            continue
        text = " ".join((argument.get("abstract") or "").split())
        variable = ""
        match = re.search(r" ?Env: ([A-Z0-9_]+(?:=1)?)(?:, ([^.]*))?\.", text)
        if match:
            variable = f"`{match.group(1)}`" + (f" ({match.group(2)})" if match.group(2) else "")
            text = text.replace(match.group(0), "")
        default = ""
        match = re.search(r" ?Default: (.*?)\.?$", text)
        if match:
            default = match.group(1)
            text = text.replace(match.group(0), "")
        yield f"--{names[0]}", variable, default, text.strip()


def table(binary, commands):
    lines = []
    for command in commands:
        if len(commands) > 1:
            lines += [f"### decryptd {command}", ""]
        rows = list(options(binary, command))
        if not rows:
            lines += ["No settings.", ""]
            continue
        lines += ["| flag | variable | default | meaning |", "|---|---|---|---|"]
        for flag, variable, default, meaning in rows:
            cells = [f"`{flag}`", variable, default, meaning]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(arguments):
    binary = str(ROOT / ".build" / "debug" / "decryptd")
    check = False
    while arguments:
        argument = arguments.pop(0)
        if argument == "--check":
            check = True
        elif argument == "--binary" and arguments:
            binary = arguments.pop(0)
        else:
            print(f"settings-table: unknown argument {argument!r} (usage: scripts/settings-table.py [--binary PATH] [--check])", file=sys.stderr)
            return 2
    stale = []
    for path, marker, commands in TARGETS:
        begin, end = f"<!-- settings:{marker}:begin (scripts/settings-table.py writes this) -->", f"<!-- settings:{marker}:end -->"
        text = path.read_text()
        if begin not in text or end not in text:
            print(f"settings-table: {path.relative_to(ROOT)} has no {begin} ... {end} markers", file=sys.stderr)
            return 1
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        wanted = head + begin + "\n" + table(binary, commands) + end + tail
        if wanted != text:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(wanted)
    if check and stale:
        print(f"settings-table: {', '.join(stale)} differ from the command line's settings: run scripts/settings-table.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
