"""Write docs/state-machine.md from the plug state machine's tables."""

from __future__ import annotations

from pathlib import Path

from evplug.core.diagram import markdown

TARGET = Path(__file__).resolve().parent.parent / "docs" / "state-machine.md"

if __name__ == "__main__":
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(markdown(), encoding="utf-8")
    print(f"wrote {TARGET}")
