"""The paper's dialogue settings (docs/method.md section 6): Anthropic-HH with Pythia
(:mod:`.hh`, ``aihf experiment hh``, docs/hh.md) and UltraFeedback + UltraChat at 7B
(:mod:`.ultra`, ``aihf experiment ultra``, docs/ultra.md), in small parts:

* :mod:`.fixtures`: offline files in the hub's row formats, and the fixtures' judge;
* :mod:`.hub`: hub datasets and models or their local copies, one-line error offline;
* :mod:`.judge`: the evaluation's reward model (no method trains on it);
* :mod:`.evaluation`: judge reward, KL and win rate against a baseline policy;
* :mod:`.stages`: the shared sections, the base model and the train-and-score loop;
* :mod:`.estimate`, :mod:`.dryrun`: ``--dry-run``'s memory and time estimate and the
  accelerate config check;
* :mod:`.presets`: ``configs/hh/`` and ``configs/ultra/``.
"""
