"""How much reward signal a setting's preferences carry that a learner can carry over to
held-out pairs: the yardsticks for the reward models' held-out preference accuracy.

    python scripts/imdb_reward_signal.py runs/imdb-tune/settings/balanced

Prints, for the held-out pairs (``eval_preferences.jsonl``): the share whose Bradley-Terry
label agrees with the gold reward (the ceiling of any learner, as the labels are drawn
with probability sigma(gold_w - gold_l)), and the held-out accuracy of a bag-of-words
Bradley-Terry model (logistic regression on the word-count difference of chosen and
rejected, no intercept) fitted on the training pairs (``preferences.jsonl``) for a few
regularisation strengths. Needs ``pip install -e ".[imdb]"``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from aihf.eval.gold import GoldConfig, load_gold
from aihf.experiments.imdb import data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", type=Path, help="a settings/<name> folder of an IMDb run")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="inverse L2 strengths C")
    args = p.parse_args()
    load = lambda name: [json.loads(line) for line in (args.setting / name).read_text().splitlines()]  # noqa: E731
    train, held = load("preferences.jsonl"), load("eval_preferences.jsonl")
    gold = load_gold(data.load_reviews(), GoldConfig())
    chosen = gold.score([r["prompt"] + r["chosen"] for r in held])
    rejected = gold.score([r["prompt"] + r["rejected"] for r in held])
    print(f"{len(train)} training pairs, {len(held)} held-out pairs")
    print(f"held-out labels agreeing with the gold reward (ceiling): {np.mean(chosen > rejected):.3f}")
    words = CountVectorizer(binary=True).fit([r[k] for r in train for k in ("chosen", "rejected")])
    diff = lambda rows: words.transform([r["chosen"] for r in rows]) - words.transform([r["rejected"] for r in rows])  # noqa: E731
    flip = np.random.default_rng(0).random(len(train)) < 0.5  # both classes: half the pairs swapped
    features = diff(train).multiply(np.where(flip, -1.0, 1.0)[:, None]).tocsr()
    for strength in args.strengths:
        model = LogisticRegression(C=strength, fit_intercept=False, max_iter=5000).fit(features, (~flip).astype(int))
        weights = model.coef_.ravel()
        print(f"bag-of-words Bradley-Terry, C={strength:g}: held-out accuracy {np.mean(diff(held) @ weights > 0):.3f}, "
              f"training accuracy {np.mean(diff(train) @ weights > 0):.3f}")


if __name__ == "__main__":
    main()
