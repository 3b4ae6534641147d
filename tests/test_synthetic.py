"""The synthetic word-problem generator: determinism, correct steps, splits, configs, variety."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reasoning_gym.problem import Problem
from reasoning_gym.sources.base import SPLITS, make_source, split_of
from reasoning_gym.sources import synthetic
from reasoning_gym.sources.synthetic import (
    DIFFICULTIES,
    LEVELS,
    SyntheticConfig,
    generate_problem,
    mixed_level,
    resolve_difficulty,
    synthetic_source,
)
from reasoning_gym.steps import answer_step, extract_answer, first_answer, render_state, split_steps

REPO_ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")
NUMBER = re.compile(r"\d+")
WORD_NUMBERS = range(2, 11)  # "half", "a third", "doubles", "3 times" ... may state small numbers in words

CUSTOM_CONFIGS = [
    SyntheticConfig(min_ops=k, max_ops=k, max_value=99, max_result=1000, operations=ops)
    for k in range(2, 7)
    for ops in ("+-*/", "+", "-", "*", "+-", "*/", "-/", "+*")
] + [SyntheticConfig(min_ops=k, max_ops=k, max_value=200, max_result=1000, operations="/") for k in range(2, 7)]


def check_problem(problem: Problem, config: SyntheticConfig) -> None:
    """Replay the reference steps and check them against the text and the config."""
    *computations, last = problem.steps
    assert last == answer_step(problem.answer)
    assert len(computations) == problem.metadata["num_ops"]
    assert config.min_ops <= len(computations) <= config.max_ops
    stated = [int(n) for n in NUMBER.findall(problem.question)]
    assert all(n <= config.max_value for n in stated), problem.question
    results: list[int] = []
    operands: list[int] = []
    for step in computations:
        match = STEP.match(step)
        assert match, f"step {step!r} is not 'a op b = c'"
        a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
        assert op in config.operations
        if op == "+":
            assert a + b == c, step
        elif op == "-":
            assert a - b == c and c >= 0, step
        elif op == "*":
            assert a * b == c, step
        else:
            assert b >= 2 and a % b == 0 and a // b == c, step
        assert 0 <= c <= config.max_result, step
        for x in (a, b):  # every operand is stated in the text, an earlier result, or a number word
            assert x in stated or x in results or x in WORD_NUMBERS, (step, problem.question)
        operands += [a, b]
        results.append(c)
    assert results[-1] == int(problem.answer)
    assert problem.answer == str(int(problem.answer))
    assert Counter(stated) <= Counter(operands), "every number in the text is used by a step"
    for i, value in enumerate(results[:-1]):  # every intermediate result feeds a later step
        later = [int(x) for s in computations[i + 1 :] for x in STEP.match(s).group(1, 3)]
        assert value in later, problem.steps


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_preset_problems_have_correct_steps(difficulty):
    config = DIFFICULTIES[difficulty]
    for index in range(1500):
        problem = generate_problem(index, seed=7, config=config)
        check_problem(problem, config)
        assert problem.metadata == {
            "difficulty": difficulty,
            "num_ops": problem.metadata["num_ops"],
            "seed": 7,
            "index": index,
            "structure": problem.metadata["structure"],
        }
        assert problem.id == f"synthetic-{difficulty}-7-{index}"


def test_every_op_count_and_operation_subset_gives_correct_steps():
    for config in CUSTOM_CONFIGS:
        counts = Counter()
        for index in range(60):
            problem = generate_problem(index, seed=3, config=config)
            check_problem(problem, config)
            assert problem.id == f"synthetic-custom-3-{index}"
            counts.update(step.split()[1] for step in problem.steps[:-1])
        if config.operations == ("+", "-", "*", "/"):
            assert set(counts) == {"+", "-", "*", "/"}, (config, counts)


def test_num_ops_covers_the_configured_range():
    for name, config in DIFFICULTIES.items():
        seen = {generate_problem(i, 0, config).metadata["num_ops"] for i in range(300)}
        assert seen == set(range(config.min_ops, config.max_ops + 1)), name


def test_presets():
    easy, medium, hard = DIFFICULTIES["easy"], DIFFICULTIES["medium"], DIFFICULTIES["hard"]
    assert (easy.min_ops, easy.max_ops, easy.max_value) == (2, 3, 30)
    assert (medium.min_ops, medium.max_ops, medium.max_value) == (2, 4, 99)
    assert (hard.min_ops, hard.max_ops, hard.max_value) == (3, 6, 999)
    assert easy.max_result < medium.max_result < hard.max_result <= 10_000
    assert SyntheticConfig() == easy
    assert LEVELS == {1: "easy", 2: "medium", 3: "hard"}


def test_steps_round_trip_through_the_step_format():
    for index in range(50):
        problem = generate_problem(index, 0, "medium")
        assert split_steps(render_state(problem.question, problem.steps).split("Solution:\n", 1)[1]) == list(
            problem.steps
        )
        assert first_answer(problem.steps) == (len(problem.steps) - 1, problem.answer)
        assert extract_answer(problem.steps[-1]) == problem.answer


def test_design_example_shape_exists():
    """Some problems combine two sub-results (like 3*15=45, 34-12=22, 22+45=67), others are chains."""
    combined = chained = 0
    for index in range(300):
        problem = generate_problem(index, 0, "easy")
        steps = [STEP.match(s) for s in problem.steps[:-1]]
        results = {int(m[4]) for m in steps[:-1]}
        last = steps[-1]
        if int(last[1]) in results and int(last[3]) in results and len(steps) >= 3:
            combined += 1
        if all(int(m[1]) == int(prev[4]) for prev, m in zip(steps, steps[1:])):
            chained += 1
    assert combined >= 20 and chained >= 50
    structures = Counter(generate_problem(i, 0, "hard").metadata["structure"] for i in range(300))
    assert set(structures) == {"chain", "combine", "relative"} and min(structures.values()) >= 30


def test_a_count_of_one_takes_the_singular():
    """'Mia has 1 fewer shell', never '1 fewer shells'; other counts keep the plural."""
    plurals = {family[0]: family[1] for family in synthetic._ITEMS}
    singular_one = 0
    for index in range(2000):
        question = generate_problem(index, 0, "basic").question
        for match in re.finditer(r"(?<![\d.])(\d+) (?:more |fewer )?(\w+)", question):
            count, noun = match[1], match[2]
            if count == "1" and noun in plurals.values():
                singular_one += 1
            assert not (count == "1" and noun in plurals), question
            assert not (count != "1" and noun in plurals.values()), question
    assert singular_one >= 10


def test_deterministic_by_seed_and_index():
    for index in (0, 1, 17, 999):
        for difficulty in ("easy", "hard", "mixed"):
            first = generate_problem(index, seed=5, config=difficulty)
            again = generate_problem(index, seed=5, config=difficulty)
            assert first == again and first.steps == again.steps and first.metadata == again.metadata
    # order of generation does not matter
    forward = [generate_problem(i, 2).question for i in range(20)]
    backward = [generate_problem(i, 2).question for i in reversed(range(20))][::-1]
    assert forward == backward
    # different seeds give different problems
    differ = sum(generate_problem(i, 0).question != generate_problem(i, 1).question for i in range(100))
    assert differ >= 95
    # different configs give different problems for the same (seed, index)
    assert generate_problem(3, 0, "easy").question != generate_problem(3, 0, "hard").question


def test_deterministic_across_processes_with_different_hash_seeds():
    code = (
        "from reasoning_gym.sources.synthetic import generate_problem\n"
        "print('|'.join(generate_problem(i, 11, 'mixed').question for i in range(5)))\n"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": path}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outputs.add(done.stdout.strip())
    assert outputs == {"|".join(generate_problem(i, 11, "mixed").question for i in range(5))}


def test_difficulty_aliases():
    for level, name in LEVELS.items():
        assert generate_problem(4, 0, level) == generate_problem(4, 0, name)
        assert generate_problem(4, 0, level).id == f"synthetic-{name}-0-4"
    as_dict = {"min_ops": 2, "max_ops": 4, "max_value": 99, "max_result": 1000}
    assert generate_problem(9, 1, as_dict) == generate_problem(9, 1, "medium")  # equal to the preset
    custom = generate_problem(9, 1, {"min_ops": 5, "max_ops": 5})
    assert custom.id == "synthetic-custom-1-9" and custom.metadata["num_ops"] == 5
    assert resolve_difficulty("Hard") == ("hard", DIFFICULTIES["hard"])
    assert resolve_difficulty("mixed") == ("mixed", None)


def test_a_named_mix_draws_only_and_all_of_its_presets():
    assert resolve_difficulty("mixed:basic, easy") == ("mixed:basic, easy", None)
    problems = synthetic_source(split="test", size=60, seed=3, difficulty="mixed:basic,easy")
    assert {p.metadata["difficulty"] for p in problems} == {"basic", "easy"}
    for problem in problems:
        index = problem.metadata["index"]
        assert problem == generate_problem(index, 3, "mixed:basic,easy")
        assert problem.metadata["difficulty"] == mixed_level(index, 3, "mixed:basic,easy")
    assert [mixed_level(i, 0) for i in range(20)] == [mixed_level(i, 0, "mixed") for i in range(20)]
    for bad, named in (("mixed:basic,nightmare", "nightmare"), ("mixed:", "no preset")):
        with pytest.raises(ValueError, match=named):
            generate_problem(0, 0, bad)


def test_unknown_difficulty_lists_presets():
    for bad in ("impossible", 4, 0):
        with pytest.raises(ValueError) as info:
            generate_problem(0, 0, bad)
        for name in ("easy", "medium", "hard"):
            assert name in str(info.value)
    with pytest.raises(ValueError, match="mixed"):
        synthetic_source(size=1, difficulty="nightmare")
    with pytest.raises(ValueError, match=r"unknown SyntheticConfig keys \['depth'\]"):
        synthetic_source(size=1, difficulty={"max_ops": 3, "depth": 2})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_ops": 0}, "min_ops"),
        ({"min_ops": 4, "max_ops": 3}, "max_ops"),
        ({"max_ops": 11}, "max_ops"),
        ({"min_ops": "2"}, "min_ops"),
        ({"max_value": 1}, "max_value"),
        ({"max_value": 50, "max_result": 40}, "max_result"),
        ({"operations": ("+", "%")}, "operations"),
        ({"operations": ()}, "operations"),
        ({"operations": "/", "max_ops": 6, "max_value": 30}, "operations"),
        ({"operations": "*", "max_ops": 8, "max_result": 300}, "operations"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"SyntheticConfig\.{field}"):
        SyntheticConfig(**kwargs)


def test_config_normalises_operations_and_is_hashable():
    assert SyntheticConfig(operations=["*", "+"]).operations == ("+", "*")
    assert SyntheticConfig(operations="*+") == SyntheticConfig(operations=("+", "*"))
    assert len({SyntheticConfig(), SyntheticConfig(), DIFFICULTIES["hard"]}) == 2
    with pytest.raises(AttributeError):
        DIFFICULTIES["easy"].max_ops = 9  # frozen


def test_splits_are_disjoint_and_match_split_of():
    sets = {split: synthetic_source(split=split, size=300, seed=0, difficulty="easy") for split in SPLITS}
    texts = {}
    for split, problems in sets.items():
        assert len(problems) == 300
        assert all(split_of(p.question) == split for p in problems)
        questions = [p.question for p in problems]
        assert len(set(questions)) == 300, "questions are deduplicated within a set"
        assert len({p.id for p in problems}) == 300
        texts[split] = set(questions)
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    # whatever the seed or difficulty: a test set never shares a text with a train set
    other = synthetic_source(split="test", size=300, seed=1, difficulty="mixed")
    assert not {p.question for p in other} & texts["train"]
    # indices are walked in order, so a bigger set extends a smaller one
    assert synthetic_source(split="train", size=50).problems == sets["train"].problems[:50]


def test_custom_fractions_and_all_split():
    fractions = (0.5, 0.25, 0.25)
    validation = synthetic_source(split="validation", size=100, fractions=fractions, difficulty="hard")
    assert all(split_of(p.question, fractions) == "validation" for p in validation)
    everything = synthetic_source(split="all", size=120, seed=4)
    assert len(everything) == 120 and everything.problems == synthetic_source(split=None, size=120, seed=4).problems
    assert {split_of(p.question) for p in everything} == set(SPLITS)
    assert [p.metadata["index"] for p in everything][:5] == [0, 1, 2, 3, 4]


def test_source_errors():
    with pytest.raises(ValueError, match="unknown split"):
        synthetic_source(split="dev", size=1)
    with pytest.raises(ValueError, match="size"):
        synthetic_source(size=-1)
    with pytest.raises(ValueError, match="fraction 0"):
        synthetic_source(split="test", size=1, fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="fractions"):
        synthetic_source(size=1, fractions=(0.5, 0.5, 0.5))
    assert len(synthetic_source(size=0)) == 0


def test_source_stops_when_problems_repeat(monkeypatch):
    same = generate_problem(0, 0)
    monkeypatch.setattr(synthetic, "generate_problem", lambda index, seed, config: same)
    assert len(synthetic_source(split=None, size=1)) == 1
    with pytest.raises(RuntimeError, match="distinct"):
        synthetic_source(split=None, size=2)


def test_registered_source():
    problems = make_source("synthetic", split="test", size=20, seed=2, difficulty=2)
    assert problems.problems == synthetic_source(split="test", size=20, seed=2, difficulty="medium").problems
    assert problems.name == "synthetic-medium-2-test"


def test_mixed_draws_all_levels_deterministically():
    problems = [generate_problem(i, 3, "mixed") for i in range(90)]
    levels = Counter(p.metadata["difficulty"] for p in problems)
    assert set(levels) == {"easy", "medium", "hard"} and min(levels.values()) >= 15
    for index, problem in enumerate(problems):
        level = mixed_level(index, 3)
        assert problem.metadata["difficulty"] == level
        assert problem.id == f"synthetic-mixed-3-{index}"
        assert problem.question == generate_problem(index, 3, level).question
        check_problem(problem, DIFFICULTIES[level])
    assert [mixed_level(i, 3) for i in range(30)] != [mixed_level(i, 4) for i in range(30)]


# item and container words of the generator, blanked out of sentences
_NOUNS = {word for plural, singular, _, boxes in synthetic._ITEMS for word in (plural, singular)} | {
    word for *_, boxes in synthetic._ITEMS for pair in boxes for word in pair
}
_PRONOUNS = {"he", "she", "him", "her", "his", "they", "them", "their"}


def _skeleton(sentence: str) -> str:
    """A sentence with numbers, names, pronouns and nouns blanked: roughly its template."""
    words = []
    for word in re.findall(r"[\w']+", sentence):
        if word.isdigit():
            words.append("#")
        elif word.lower() in _PRONOUNS or word[0].isupper() and word not in ("Each", "How", "There", "Then", "Later"):
            words.append("X")
        elif word in _NOUNS:
            words.append("N")
        else:
            words.append(word.lower())
    return " ".join(words)


def _sentences(question: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?])\s+", question) if s]


@pytest.mark.parametrize("operations", ["+", "-", "*", "/"])
def test_each_operation_has_varied_wording(operations):
    """With one operation allowed, the sentences that apply it come in >= 6 distinct templates."""
    config = SyntheticConfig(min_ops=2, max_ops=4, max_value=200, max_result=2000, operations=operations)
    skeletons = set()
    for index in range(400):
        problem = generate_problem(index, 0, config)
        for sentence in _sentences(problem.question)[1:-1]:  # not the opening amount, not the question
            skeleton = re.sub(r"\b(a|an) (half|third|quarter|fifth|sixth|seventh|eighth|ninth|tenth)\b", "FRAC",
                              _skeleton(sentence))
            skeletons.add(skeleton.replace("half", "FRAC"))
    assert len(skeletons) >= 6, sorted(skeletons)
    verbs = {word for s in skeletons for word in s.split()[1:2]}
    assert len(verbs) >= 4, sorted(skeletons)


def test_wording_variety_across_problems():
    problems = [generate_problem(i, 0, "easy") for i in range(200)]
    first_words = Counter(p.question.split()[0] for p in problems)
    second_sentences = Counter(_sentences(p.question)[1].split()[1] for p in problems if len(_sentences(p.question)) > 2)
    question_starts = Counter(" ".join(_sentences(p.question)[-1].split()[:3]) for p in problems)
    items = {w for p in problems for w in ("apples", "pencils", "marbles", "cookies", "stickers", "books", "cards",
                                           "eggs", "candies", "balloons", "coins", "flowers", "shells", "oranges",
                                           "crayons", "cupcakes") if w in p.question}
    assert len(first_words) >= 12  # names and "There", "Each"
    assert len(second_sentences) >= 15  # verbs of the second sentence
    assert len(question_starts) >= 8
    assert len(items) >= 12
    assert max(first_words.values()) <= 40


def test_questions_are_compact_and_well_formed():
    for difficulty, median_cap, max_cap in (("easy", 180, 300), ("medium", 200, 360), ("hard", 260, 520)):
        questions = [generate_problem(i, 1, difficulty).question for i in range(500)]
        lengths = [len(q) for q in questions]
        assert statistics.median(lengths) <= median_cap and max(lengths) <= max_cap, difficulty
        for q in questions:
            assert q.endswith("?") and q.count("?") == 1, q
            assert not re.search(r"[{}<>]", q), q
            assert "  " not in q and q[0].isupper()
            assert all(s[0].isupper() or s[0].isdigit() for s in _sentences(q)), q
    easy = [len(generate_problem(i, 1, "easy").question) for i in range(500)]
    assert sum(n <= 250 for n in easy) >= 490


def test_operations_are_balanced_in_presets():
    for difficulty in DIFFICULTIES:
        counts = Counter(s.split()[1] for i in range(500) for s in generate_problem(i, 0, difficulty).steps[:-1])
        total = sum(counts.values())
        assert set(counts) == {"+", "-", "*", "/"}
        assert all(count / total >= 0.08 for count in counts.values()), (difficulty, counts)


def test_generation_is_fast():
    start = time.perf_counter()
    problems = synthetic_source(split="train", size=1000, seed=123, difficulty="mixed")
    assert len(problems) == 1000
    assert time.perf_counter() - start < 3.0
