"""One module per paper: experiment, analysis, figures, claims. One registry line each."""

from lmlab.registry import Registry

STUDIES = Registry("study", {
    "two-hop": "lmlab.studies.two_hop:TwoHopStudy",
    "extreme-tokens": "lmlab.studies.extreme_tokens:ExtremeTokensStudy",
    "llm-two-hop": "lmlab.studies.llm_two_hop:LLMTwoHopStudy",
    "llm-sinks": "lmlab.studies.llm_sinks:LLMSinksStudy",
    "reversal-curse": "lmlab.studies.reversal_curse:ReversalCurseStudy",
    "tokenization": "lmlab.studies.tokenization:TokenizationStudy",
    "reward-eval": "lmlab.studies.reward_eval:RewardEvalStudy",
    "token-assorted": "lmlab.studies.token_assorted:TokenAssortedStudy",
    "muli": "lmlab.studies.muli:MULIStudy",
    "embedllm": "lmlab.studies.embedllm:EmbedLLMStudy",
    "prompt-cache": "lmlab.studies.prompt_cache:PromptCacheStudy",
    "ideal": "lmlab.studies.ideal:IdealStudy",
    "tpo": "lmlab.studies.tpo:TPOStudy",
    "meta-rewarding": "lmlab.studies.meta_rewarding:MetaRewardingStudy",
    "security": "lmlab.studies.security:SecurityStudy",
})
