"""Verdicts on claims whose judging takes more than a notebook cell: a chapter's measurements turned into
:class:`helpers.claims.Judgement` s (parts, guards, ``not_run`` reasons). One module per notebook that needs one;
this floor sits beside :mod:`helpers.claims` and above the training floor it reads."""
from . import capacity, counting, defences, features, lottery

__all__ = ["capacity", "counting", "defences", "features", "lottery"]
