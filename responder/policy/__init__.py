"""Stage 2b, policy: the policy file and ``RESPONDER_*`` overrides → a :class:`~responder.containment.plan.Plan`.

Owns rules and matching, defaults and their env overrides, the protected floor (``rules``). Its step vocabulary is
derived from ``responder.containment.registry``. May import ``intake``, ``containment``, ``config``, ``errors``.
"""
