"""An independent sentiment judge, for evaluation only (never a training signal).

The gold reward is what the methods' data are labelled with, so a policy can learn the
gold classifier's quirks; a second opinion from a different model tells reward hacking
from real sentiment. The judge here is VADER's compound score (a lexicon and rules, in
[-1, 1]; Hutto & Gilbert, 2014), which shares nothing with the gold classifier's training.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class VaderJudge:
    """VADER compound sentiment of each text, in [-1, 1] (positive > 0)."""

    name = "vader"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError("the VADER judge needs `pip install vaderSentiment` (or aihf[imdb])") from err
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Compound scores, float64, one per text."""
        return np.fromiter(
            (self._analyzer.polarity_scores(text)["compound"] for text in texts), dtype=np.float64, count=len(texts)
        )
