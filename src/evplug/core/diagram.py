"""The plug state machine as a mermaid diagram, rendered from the tables in ``plug.py``.

``docs/state-machine.md`` is this function's output (``make diagram``); a test fails when the
two disagree, so the picture can never drift from the code.
"""

from __future__ import annotations

from evplug.core.plug import AUTOMATIC, END_REASONS, ON_ENTER, PROMPTS, TRANSITIONS, State


def mermaid() -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {State.INITIALISING}"]
    for source, edges in TRANSITIONS.items():
        for trigger, target in edges.items():
            lines.append(f"    {source} --> {target}: {trigger}")
    for state, action in ON_ENTER.items():
        lines.append(f"    note right of {state}: on entry, {action}")
    return "\n".join(lines)


def markdown() -> str:
    prompts = "\n".join(
        f"| {state} | {', '.join(PROMPTS.get(state, ())) or '—'} |"
        f" {'yes' if state in AUTOMATIC else ''} |"
        for state in State
    )
    reasons = "\n".join(f"| {trigger} | `{reason}` |" for trigger, reason in END_REASONS.items())
    return f"""# Plug state machine

Generated from `src/evplug/core/plug.py` by `make diagram` (tools/gen_state_diagram.py);
do not edit by hand: a test fails when this file and the tables disagree.

```mermaid
{mermaid()}
```

| state | driver prompts | left at once (automatic) |
| --- | --- | --- |
{prompts}

A session's end reason is set by the first of these triggers it meets:

| trigger | end reason |
| --- | --- |
{reasons}
"""
