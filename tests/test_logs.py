"""The commands' console output: each message once, transformers quiet, numbers with nouns."""

import logging

from aihf import logs


def test_a_repeated_message_is_shown_once_per_command(capsys):
    log = logging.getLogger("aihf.test_logs")
    logs.setup(logging.INFO)
    for _ in range(3):
        log.warning("sft: 6 of 32 prompts truncated")
    log.warning("sft: 7 of 32 prompts truncated")
    log.info("read 2 rows")
    log.debug("not shown at INFO")
    assert capsys.readouterr().err.splitlines() == [
        "WARNING aihf.test_logs: sft: 6 of 32 prompts truncated",
        "WARNING aihf.test_logs: sft: 7 of 32 prompts truncated",
        "INFO aihf.test_logs: read 2 rows",
    ]
    logs.setup(logging.WARNING)  # the next command shows it again, once; one handler, not two
    log.warning("sft: 6 of 32 prompts truncated")
    log.warning("sft: 6 of 32 prompts truncated")
    log.info("read 2 rows")
    assert capsys.readouterr().err == "WARNING aihf.test_logs: sft: 6 of 32 prompts truncated\n"


def test_other_libraries_show_warnings_not_info(capsys):
    """datasets announces "JAX version ... available" at INFO when JAX is installed (the sbx
    backend): not a line for the user; a library's warning still is."""
    logs.setup(logging.INFO)
    logging.getLogger("datasets").info("JAX version 0.10.2 available.")
    logging.getLogger("datasets").warning("a library warning")
    logging.getLogger("aihf.test_logs").info("read 2 rows")
    assert capsys.readouterr().err.splitlines() == ["WARNING datasets: a library warning", "INFO aihf.test_logs: read 2 rows"]


def test_transformers_logs_errors_only_without_progress_bars(monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    logs.setup()
    # the "LOAD REPORT" tables are warnings of transformers.modeling_utils' logger
    assert not hf_logging.get_logger("transformers.modeling_utils").isEnabledFor(logging.WARNING)
    assert not hf_logging.is_progress_bar_enabled()  # "Loading weights", "Writing model shards"
    hf_logging.set_verbosity_info()
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's choice stands
    logs.setup()
    assert hf_logging.get_logger("transformers.modeling_utils").isEnabledFor(logging.INFO)
    hf_logging.set_verbosity_warning()


def test_count_gives_the_noun_its_number():
    assert [logs.count(n, "seed") for n in (0, 1, 3)] == ["0 seeds", "1 seed", "3 seeds"]


def test_seeds_by_status_groups_each_statuss_seeds_in_first_seen_order():
    line = logs.seeds_by_status([(0, "reused"), (1, "to train"), (2, "reused"), (5, "to resume at outer iteration 3")])
    assert line == "seeds 0, 2: reused; seed 1: to train; seed 5: to resume at outer iteration 3"
    assert logs.seeds_by_status([]) == ""
