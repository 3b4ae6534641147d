"""The step format: rendering states, splitting solutions into steps, finding final answers.

The bundled models and prompts write one step per line::

    Step 1: 3 * 15 = 45
    Step 2: The answer is 45

Real LLMs write freer text, so the splitter accepts plain newline-delimited lines
and the answer extractor accepts "The answer is X", ``\\boxed{X}``, ``#### X`` and
"Answer: X" anywhere in a step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

ANSWER_PHRASE = "The answer is"

_STEP_PREFIX = re.compile(r"^\s*(?:\*\*)?step\s*\d+\s*(?:\*\*)?\s*[:.)-]\s*(?:\*\*)?\s*", re.IGNORECASE)
_ANSWER_PATTERNS = (
    re.compile(r"final answer\s*(?:is|:)\s*(.+)", re.IGNORECASE),
    re.compile(r"the answer is\s*:?\s*(.+)", re.IGNORECASE),
    re.compile(r"^\s*#{2,4}\s*(.+)$", re.MULTILINE),
    re.compile(r"\banswer\s*:\s*(.+)", re.IGNORECASE),
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def format_step(index: int, text: str) -> str:
    """Render step `text` as line number `index` (1-based), e.g. ``"Step 2: 4 + 5 = 9"``."""
    return f"Step {index}: {text}"


def answer_step(answer: str) -> str:
    """The step that states `answer` in the bundled format: ``"The answer is 67"``."""
    return f"{ANSWER_PHRASE} {answer}"


def render_state(question: str, steps: Sequence[str]) -> str:
    """The text of a state: the prompt that policies continue and the PRM scores.

    ``"Problem: {question}\\nSolution:\\n"`` followed by one ``"Step k: ..."`` line
    per step, each ending in a newline.
    """
    lines = "".join(format_step(i, step) + "\n" for i, step in enumerate(steps, start=1))
    return f"Problem: {question}\nSolution:\n{lines}"


def normalize_step(text: str) -> str:
    """Strip a leading ``"Step k:"`` label and surrounding space; fold inner newlines.

    A step is one line of the rendered state, so newlines inside a step become a
    single space; otherwise re-splitting a rendered state would not give back the
    same steps.
    """
    text = _STEP_PREFIX.sub("", text.strip(), count=1)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def split_steps(text: str) -> list[str]:
    """Split a free-text solution into steps: one per non-empty line, labels removed."""
    steps = (normalize_step(line) for line in text.splitlines())
    return [step for step in steps if step]


def _boxed_contents(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` in `text`, honouring nested braces."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for pos in range(start, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos]
    return None  # unbalanced: no well-formed box


def clean_answer(answer: str) -> str:
    """Trim what surrounds an answer in prose: spaces, a final period, ``$`` delimiters."""
    answer = answer.strip()
    answer = re.sub(r"[.;,!]+$", "", answer).strip()
    if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    return answer


def extract_answer(text: str) -> str | None:
    """The final answer stated in `text` (a step or a whole solution), or None.

    A ``\\boxed{}`` wins over phrases; among phrases, "final answer", then
    "The answer is", then ``#### X``, then "Answer: X". A phrase with nothing
    after it states no answer.
    """
    boxed = _boxed_contents(text)
    if boxed is not None and boxed.strip():
        return clean_answer(boxed)
    for pattern in _ANSWER_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            answer = clean_answer(matches[-1].splitlines()[0])
            if answer:
                return answer
    return None


def first_answer(steps: Iterable[str]) -> tuple[int, str] | None:
    """Index and answer of the first step in `steps` that states a final answer."""
    for index, step in enumerate(steps):
        answer = extract_answer(step)
        if answer is not None:
            return index, answer
    return None
