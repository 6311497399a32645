"""Zone rules: the engine, the registry, and one module per rule type.

Every module of this package other than `base` and `engine` is a rule type and is imported here, so it
registers itself: adding a rule type is adding one module (its config model + evaluator + `register_rule`).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    AnyRuleConfig,
    Firing,
    RuleConfigBase,
    RuleFrame,
    RuleType,
    register_rule,
    registered_rules,
    rule_type,
)
from .engine import RuleEngine, RuleResult

_NOT_RULES = {"base", "engine"}
for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in _NOT_RULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AnyRuleConfig",
    "Firing",
    "RuleConfigBase",
    "RuleEngine",
    "RuleFrame",
    "RuleResult",
    "RuleType",
    "register_rule",
    "registered_rules",
    "rule_type",
]
