"""Reward-model evaluation in the style of PPE (Frick et al., ICLR 2025, arXiv 2410.14872).

=========================  ==================================================================
``lmlab.rewardeval.metrics``  every PPE metric as a pure vectorised NumPy function
``lmlab.rewardeval.data``     readers (JSONL/parquet) for the human-preference and best-of-K
                              schemas, validated row by row; HH-RLHF conversion
``lmlab.rewardeval.models``   reward models behind ``RewardModel.score(prompt, response)``:
                              HF sequence classifiers, LLM judges, implicit (DPO) reward, length
``lmlab.rewardeval.builder``  a verifiable-correctness (best-of-K) set builder over any ``LM``
=========================  ==================================================================

Importing this package imports nothing heavy.
"""
