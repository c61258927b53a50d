"""Data layer: records, validation with file/row/field errors, readers and writers.

Language (docs/method.md section 1): :class:`Demonstration` and :class:`Preference` records,
and :class:`PromptRecord` (a prompt alone: the RL prompt set of section 6), read from
JSONL, Parquet, a ``datasets.Dataset`` or a list of dicts. Control:
:class:`Trajectory`, :class:`SegmentPreference` and the array sets :class:`TransitionSet`
and :class:`SegmentPreferenceSet` (``.npz`` without pickle). Every bad input raises
:class:`DataError` naming the source, the row and the field.
"""

from aihf.data.errors import DataError
from aihf.data.readers import ReadReport, Records, read_demonstrations, read_preferences, read_prompts, write_jsonl
from aihf.data.records import ROLES, Demonstration, Message, Preference, PromptRecord
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
    "Trajectory",
    "TransitionSet",
    "read_demonstrations",
    "read_preferences",
    "read_prompts",
    "write_jsonl",
]
