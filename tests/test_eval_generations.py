"""aihf.eval.generations: the readable record of an evaluation's answers."""

import json

from aihf.eval.generations import CONTROL_CHARACTERS, write_generations


def test_answers_are_written_whole_and_side_by_side(tmp_path):
    rows = lambda tag: [{"response": f"{tag} a|b\n c", "gold_reward": 0.5, "judge": -1.25}]  # noqa: E731
    generations = {("pi_sft", 0): rows("x"), ("dpo", 0): rows("y"), ("dpo", 1): rows("z")}
    path = write_generations(tmp_path, generations, 0, ["the movie"], "gold / judge", ("gold_reward", "judge"))
    text = path.read_text()
    assert "## Prompt 1: 'the movie'" in text and "- **dpo** (+0.50 / -1.25): y a\\|b c" in text
    assert "**pi_sft**" in text and "z a" not in text  # only the first seed's answers side by side
    assert [json.loads(line) for line in (tmp_path / "dpo-seed-1.jsonl").read_text().splitlines()] == generations[("dpo", 1)]
    fenced = write_generations(tmp_path / "f", generations, 0, ["Human: hi\n"], "judge", ("judge",), fenced_prompts=True)
    assert "```\nHuman: hi\n```" in fenced.read_text() and "(-1.25)" in fenced.read_text()


def test_a_control_character_in_an_answer_is_shown_as_its_escape(tmp_path):
    """A byte-level model can emit any byte; the page shows \\x03, not a raw control character."""
    generations = {("dpo", 0): [{"response": "Bet\x03 rad\x7f\tend", "judge": 0.0}]}
    text = write_generations(tmp_path, generations, 0, ["p"], "judge", ("judge",)).read_text()
    assert "- **dpo** (+0.00): Bet\\x03 rad\\x7f end" in text
    assert not CONTROL_CHARACTERS.search(text)
