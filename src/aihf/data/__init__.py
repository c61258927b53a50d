"""Data layer: records, validation with file/row/field errors, readers and writers.

Language (docs/method.md section 1): :class:`Demonstration` and :class:`Preference` records,
and :class:`PromptRecord` (a prompt alone: the RL prompt set of section 6), read from
JSONL, Parquet, a ``datasets.Dataset`` or a list of dicts. Control:
:class:`Trajectory`, :class:`SegmentPreference` and the array sets :class:`TransitionSet`
and :class:`SegmentPreferenceSet` (``.npz`` without pickle). :func:`split_without_leaks`
holds out an eval split with exact duplicates dropped or kept on one side. Every bad input raises
:class:`DataError` naming the source, the row and the field.
"""

from aihf.data.errors import DataError
from aihf.data.readers import ReadReport, Records, read_demonstrations, read_preferences, read_prompts, write_jsonl
from aihf.data.records import ROLES, Demonstration, Message, Preference, PromptRecord
from aihf.data.split import SplitReport, record_key, split_without_leaks
from aihf.data.trajectories import SegmentPreference, SegmentPreferenceSet, Trajectory, TransitionSet

__all__ = [
    "ROLES",
    "DataError",
    "ReadReport",
    "Records",
    "Demonstration",
    "Message",
    "Preference",
    "PromptRecord",
    "SegmentPreference",
    "SegmentPreferenceSet",
    "SplitReport",
    "Trajectory",
    "TransitionSet",
    "read_demonstrations",
    "read_preferences",
    "read_prompts",
    "record_key",
    "split_without_leaks",
    "write_jsonl",
]
