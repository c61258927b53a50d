"""IMDb sentiment-controlled generation (METHOD.md section 6), in small parts.

* :mod:`.data`: the reviews, the fixed saved split, prompts and SFT demonstrations;
* :mod:`.gold`: the gold reward (TF-IDF + logistic regression, cached without pickle);
* :mod:`.judge`: an independent judge (VADER) for evaluation only;
* :mod:`.builders`: demonstrations and Bradley-Terry-labelled preferences from scored responses;
* :mod:`.metrics`: gold reward, judge score, KL to SFT, win rate, summaries over seeds;
* :mod:`.plots`: results table and figures.
"""
