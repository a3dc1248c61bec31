"""The local Kubernetes cluster behind tools/kubeenv.py, standard library only (it runs before any virtualenv exists).

gobuild (compile and cache 1.35, the default), build (the legacy 1.20 from Debian source), layout (the paths),
credentials (tokens, keys, certificates, kubeconfigs), commands (each component's command line), processes (start,
await, stop), rbac, node_runtime (the node as the cluster sees it; host-level mechanics in tools/node/), up (in
phases), down, cli. Modules import each other as ``cluster.X``
and the node's as ``node.X``: tools/ must be on sys.path, as it is when tools/kubeenv.py runs.
"""
