"""Carries hand-written sections over a regenerated docs/BENCHMARKS.md.

    python3 bench/keep-sections.py OLD_PAGE NEW_PAGE NOTES > PAGE

bench/report.sh writes the sections `make bench` measures and appends bench/notes.md; sections written by
hand or by the presence and WebSocket report scripts are in neither. Every `## ` section of OLD_PAGE whose
heading NEW_PAGE lacks is kept, in its old order, right before the notes (or at the end).
"""

import sys


def sections(text):
    """(heading, text) pairs, split at lines starting with "## "; the part before the first is ("", …)."""
    out, heading, lines = [], "", []
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            out.append((heading, "".join(lines)))
            heading, lines = line.strip(), []
        lines.append(line)
    out.append((heading, "".join(lines)))
    return out


def main(old_path, new_path, notes_path):
    old = sections(open(old_path, encoding="utf-8").read())
    new = sections(open(new_path, encoding="utf-8").read())
    notes = {h for h, _ in sections(open(notes_path, encoding="utf-8").read()) if h}
    present = {h for h, _ in new}
    kept = [body for h, body in old if h and h not in present and h not in notes]
    at = next((i for i, (h, _) in enumerate(new) if h in notes), len(new))
    page = [body for _, body in new[:at]]
    for body in kept:
        page.append(body if body.endswith("\n\n") else body.rstrip("\n") + "\n\n")
    page += [body for _, body in new[at:]]
    sys.stdout.write("".join(page))


if __name__ == "__main__":
    main(*sys.argv[1:4])
