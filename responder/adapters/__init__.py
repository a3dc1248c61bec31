"""The outside world behind ``responder.ports``: the only code that imports google-cloud-*, kubernetes, google-auth.

``kube`` (KubePort over the kubernetes client), ``kube_connect`` (kubeconfig or GKE connections), ``gke``, ``scc``,
``logs``, ``pubsub``; SDK errors are mapped once (``google_errors``), clients built lazily (``google_clients``),
transient failures retried with one policy (``retrying``). SDKs are imported on first use, never at import time.
"""
