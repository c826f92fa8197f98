"""Self-improvement loops on a real model: Thought Preference Optimization (Wu et al. 2024, arXiv 2410.10630)
and Meta-Rewarding (Wu et al. 2024, arXiv 2407.19594), one iteration engine on TRL's ``DPOTrainer``.

=====================  ===========================================================================
``prompts``            TPO's generic / specific thought prompts, the 5-point rubric judge, the meta-judge;
                       parsers (malformed -> None)
``sampling``           K samples per prompt (temperature, top-p), batched, resumable per prompt
``judges``             verifiable (exact answers), any ``lmlab.rewardeval`` reward model, rubric
                       LLM-as-a-judge, pairwise judge (both orders -> Bradley-Terry)
``scoring``            length control S' = N(s) - rho N(len), pair selection (TPO, quality tier),
                       Bradley-Terry, position-bias-weighted Elo, variance-based selection
``dpo``                DPO from M_t with reference M_t (TRL; full or LoRA via peft)
``loop``               one iteration in a resumable run directory; held-out evaluation
``meta``               Meta-Rewarding's judge pairs (meta-judge battles, weighted Elo)
``safety``             DPO safety tuning on HH-RLHF harmless pairs (for the MULI cross-paper experiment)
=====================  ===========================================================================

Importing this package imports nothing heavy (TRL, transformers and torch load when used).
"""
