"""After containment: what is quarantined (``status``) and how a pod is let go again (``release``).

Both run as an operator with the operator's own credentials, not as the function: they list pods by label, which the
function's RBAC deliberately cannot do (pod specs carry environment variables).
"""
