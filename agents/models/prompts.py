"""The prompt a policy continues, shared by every backend so they see the same text."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from reasoning_gym import ReasoningState, format_step, render_state

DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem step by step. Write one step per line as 'Step k: ...'. "
    "In the last step write 'The answer is X'."
)


def render_prompt(
    state: ReasoningState,
    next_step: bool,
    chat_tokenizer: PreTrainedTokenizerBase | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> str:
    """The text a model continues from `state`, plus ``"Step k:"`` when `next_step`.

    Without `chat_tokenizer`: the plain format, ``render_state(question, steps)``.
    With it: the tokenizer's chat template over a system message and the question
    as the user turn, then the steps so far as the start of the assistant turn.
    """
    label = format_step(len(state.steps) + 1, "").rstrip() if next_step else ""
    if chat_tokenizer is None:
        return render_state(state.problem.question, state.steps) + label
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": state.problem.question},
    ]
    head = chat_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    steps = "".join(format_step(i, s) + "\n" for i, s in enumerate(state.steps, start=1))
    return head + steps + label
