"""Writing generated files: `make crds` and `make docs` write what their tests compare."""

from __future__ import annotations

from pathlib import Path


def write_all(files: dict[Path, str], repo: Path) -> int:
    """Writes every file (its directory made as needed) and says so; the exit code."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(repo)}")
    return 0
