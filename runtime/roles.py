"""The built-in role agents of a requirement pipeline: what each role is asked, and how its
answer is read.

analyst → implementer → validator → integrator. The implementer's files are fenced code blocks whose info
string names the file (```python path=hello_world.py); they are written to the project's workspace under
`implementation/`. The validator's first line is its verdict: `APPROVED`, or `REJECTED: <why>`, which
sends the work back to the implementer with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ROLES = ("analyst", "implementer", "validator", "integrator")
STAGES = {
    "analyst": "analysis",
    "implementer": "implementation",
    "validator": "validation",
    "integrator": "integration",
}
FILES_DIR = "implementation"

_FORMAT = (
    "Give every file as a fenced code block whose info string names it, for example:\n"
    "```python path=hello_world.py\nprint('Hello World')\n```\n"
    "Paths are relative (no '..', no leading '/')."
)
SYSTEM = {
    "analyst": "You are the analyst of a software team. Read the requirement and write a short analysis: the "
    "goal, the files to create, how to run them, and how to check the result.",
    "implementer": "You are the implementer of a software team. Write the code the analysis asks for. " + _FORMAT,
    "validator": "You are the validator of a software team. Check the implementation against the requirement. "
    "Answer APPROVED on the first line if it meets it; otherwise REJECTED: followed by what must change.",
    "integrator": "You are the integrator of a software team. Say how the files fit together and how to run "
    "them, in a few lines.",
}

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)```", re.DOTALL)
_PATH = re.compile(r"(?:^|\s)(?:path|file|filename)=([^\s`]+)")
_VERDICT = re.compile(r"^\W*(APPROVED|REJECTED)\b\W*(.*)", re.IGNORECASE | re.DOTALL)


def prompt(role: str, state: Mapping[str, Any]) -> str:
    """What the role is asked, from the requirement and the stages before it."""
    parts = [f"Requirement:\n{state.get('requirement', '')}"]
    if role != "analyst":
        parts.append(f"Analysis:\n{state.get('analysis', '')}")
    if role == "implementer" and state.get("feedback"):
        parts.append(f"The validator rejected the last implementation:\n{state['feedback']}")
    if role in ("validator", "integrator"):
        parts.append(f"Implementation:\n{state.get('implementation', '')}")
    if role == "integrator":
        parts.append(f"Validation:\n{state.get('validation', '')}")
    return "\n\n".join(parts)


def files_in(text: str) -> list[tuple[str, str]]:
    """The files of an implementer's answer: (path, content) of each fenced block that names its file; a
    single unnamed Python block is `main.py`."""
    found: list[tuple[str, str]] = []
    unnamed: list[tuple[str, str]] = []
    for info, body in _FENCE.findall(text):
        named = _PATH.search(" " + info)
        if named:
            found.append((named.group(1), body))
        else:
            unnamed.append((info.strip().lower(), body))
    if not found and len(unnamed) == 1 and unnamed[0][0] in ("python", "py", ""):
        found.append(("main.py", unnamed[0][1]))
    return found


def verdict(text: str) -> tuple[bool, str]:
    """(approved, reason) from a validator's answer; an answer that gives no verdict is a rejection."""
    match = _VERDICT.match(text.strip())
    if match is None:
        return False, "the validator gave no verdict (APPROVED or REJECTED: …) on its first line"
    return match.group(1).upper() == "APPROVED", match.group(2).strip()
