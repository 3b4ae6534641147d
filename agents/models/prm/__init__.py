"""Published process reward models as `ValueModel`s, one adapter per family.

=================  ==========================================  ==========================================
adapter            checkpoints                                 score of a step
=================  ==========================================  ==========================================
`MathShepherdPRM`  peiyi9979/math-shepherd-mistral-7b-prm      P(+ | +, -) at the tag ``ки`` after it
`QwenPRM`          Qwen/Qwen2.5-Math-PRM-7B, -72B              softmax(2 logits)[1] at ``<extra_0>``
`RLHFlowPRM`       RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, ...  P(+ | +, -) before the assistant ``+``
`SkyworkPRM`       Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B   sigmoid(value head) at the step's ``\\n``
`ReSTValueModel`   ReST-MCTS* value model (backbone + file)    whole state: clip(Linear(vocab logits))
=================  ==========================================  ==========================================

Step PRMs turn their per-step scores into a state value by ``aggregation``
("last", the default, as search-and-learn's ``agg_strategy``; "min"; "product").
Each module's docstring states the input format, the sources it follows, and
what is and is not covered. `agents.models.prompted_value.PromptedValue` (an
LLM as judge) shares the same batching and caching (`base.CachedValueModel`).
Presets: `presets.load_value_preset` and ``configs/prm/*.yaml``.
"""

from agents.models.prm.base import AGGREGATIONS, CachedValueModel, Encoded, StepPRM
from agents.models.prm.math_shepherd import MathShepherdConfig, MathShepherdPRM
from agents.models.prm.qwen_prm import QwenPRM, QwenPRMConfig
from agents.models.prm.rest_mcts import ReSTValueConfig, ReSTValueModel
from agents.models.prm.rlhflow import RLHFlowConfig, RLHFlowPRM
from agents.models.prm.skywork import SkyworkConfig, SkyworkPRM

__all__ = [
    "AGGREGATIONS",
    "CachedValueModel",
    "Encoded",
    "MathShepherdConfig",
    "MathShepherdPRM",
    "QwenPRM",
    "QwenPRMConfig",
    "ReSTValueConfig",
    "ReSTValueModel",
    "RLHFlowConfig",
    "RLHFlowPRM",
    "SkyworkConfig",
    "SkyworkPRM",
    "StepPRM",
]
