"""aihf: joint reward and policy learning from demonstrations and preferences.

One objective (``aihf.objective``, docs/method.md section 2) with switches: which data
terms are on (w_D, w_P), whether the reward is explicit (reward model + RL policy,
Algorithm 1) or implicit (beta * log pi/pi_ref: AIHF-DPO, Self-Play-AIHF, DPO, IPO,
SPIN), and which world supplies the samples (language models, MuJoCo control).
"""

__version__ = "0.1.0"
