"""Proto3 JSON enums: names or numbers, one normalisation for every enum-like field of a notification.

proto3 JSON parsers must accept an enum as its name or its number, and the official SCC library's default ``to_json``
writes numbers (``"state": 1``). Names arrive in any case from hand-written tooling (``"muted"``). Every enum field is
read through :func:`enum_name`, so ``state``, ``mute``, ``severity`` and ``findingClass`` cannot disagree about what
counts as ``ACTIVE`` or ``MUTED``. The numbers are those of ``google.cloud.securitycenter.v{1,2}`` (identical for
the values listed; ``UNDEFINED`` is 4 in v1's ``Mute`` and 3 in v2's, both mapped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATE: Mapping[int, str] = {0: "STATE_UNSPECIFIED", 1: "ACTIVE", 2: "INACTIVE"}
MUTE: Mapping[int, str] = {0: "MUTE_UNSPECIFIED", 1: "MUTED", 2: "UNMUTED", 3: "UNDEFINED", 4: "UNDEFINED"}
SEVERITY: Mapping[int, str] = {0: "SEVERITY_UNSPECIFIED", 1: "CRITICAL", 2: "HIGH", 3: "MEDIUM", 4: "LOW"}
FINDING_CLASS: Mapping[int, str] = {
    0: "FINDING_CLASS_UNSPECIFIED",
    1: "THREAT",
    2: "VULNERABILITY",
    3: "MISCONFIGURATION",
    4: "OBSERVATION",
    5: "SCC_ERROR",
    6: "POSTURE_VIOLATION",
    7: "TOXIC_COMBINATION",
    8: "SENSITIVE_DATA_RISK",
    9: "CHOKEPOINT",
    10: "EXTERNAL_EXPOSURE",
}
TACTIC: Mapping[int, str] = {
    0: "TACTIC_UNSPECIFIED",
    1: "RECONNAISSANCE",
    2: "RESOURCE_DEVELOPMENT",
    3: "EXECUTION",
    4: "COMMAND_AND_CONTROL",
    5: "INITIAL_ACCESS",
    6: "PERSISTENCE",
    7: "DEFENSE_EVASION",
    8: "PRIVILEGE_ESCALATION",
    9: "CREDENTIAL_ACCESS",
    10: "DISCOVERY",
    11: "LATERAL_MOVEMENT",
    12: "COLLECTION",
    13: "EXFILTRATION",
    14: "IMPACT",
}
TECHNIQUE: Mapping[int, str] = {
    0: "TECHNIQUE_UNSPECIFIED",
    1: "ACTIVE_SCANNING",
    2: "SCANNING_IP_BLOCKS",
    3: "INGRESS_TOOL_TRANSFER",
    4: "NATIVE_API",
    5: "SHARED_MODULES",
    6: "COMMAND_AND_SCRIPTING_INTERPRETER",
    7: "UNIX_SHELL",
    8: "RESOURCE_HIJACKING",
    9: "PROXY",
    10: "EXTERNAL_PROXY",
    11: "MULTI_HOP_PROXY",
    12: "DYNAMIC_RESOLUTION",
    13: "UNSECURED_CREDENTIALS",
    14: "VALID_ACCOUNTS",
    15: "LOCAL_ACCOUNTS",
    16: "CLOUD_ACCOUNTS",
    17: "NETWORK_DENIAL_OF_SERVICE",
    18: "PERMISSION_GROUPS_DISCOVERY",
    19: "CLOUD_GROUPS",
    20: "EXFILTRATION_OVER_WEB_SERVICE",
    21: "EXFILTRATION_TO_CLOUD_STORAGE",
    22: "ACCOUNT_MANIPULATION",
    23: "SSH_AUTHORIZED_KEYS",
    24: "CREATE_OR_MODIFY_SYSTEM_PROCESS",
    25: "STEAL_WEB_SESSION_COOKIE",
    26: "MODIFY_CLOUD_COMPUTE_INFRASTRUCTURE",
    27: "EXPLOIT_PUBLIC_FACING_APPLICATION",
    28: "MODIFY_AUTHENTICATION_PROCESS",
    29: "DATA_DESTRUCTION",
    30: "DOMAIN_POLICY_MODIFICATION",
    31: "IMPAIR_DEFENSES",
    32: "NETWORK_SERVICE_DISCOVERY",
    33: "ACCESS_TOKEN_MANIPULATION",
    34: "ABUSE_ELEVATION_CONTROL_MECHANISM",
    35: "DEFAULT_ACCOUNTS",
    36: "INHIBIT_SYSTEM_RECOVERY",
    37: "BOOT_OR_LOGON_INITIALIZATION_SCRIPTS",
    38: "STARTUP_ITEMS",
    39: "TOKEN_IMPERSONATION_OR_THEFT",
    40: "ADDITIONAL_CLOUD_CREDENTIALS",
    41: "LATERAL_TOOL_TRANSFER",
    42: "STEAL_APPLICATION_ACCESS_TOKEN",
    43: "OBTAIN_CAPABILITIES",
    44: "BRUTE_FORCE",
    45: "APPLICATION_LAYER_PROTOCOL",
    46: "DNS",
    47: "SOFTWARE_DEPLOYMENT_TOOLS",
    48: "CLOUD_SERVICE_DISCOVERY",
    49: "MASQUERADING",
    50: "MATCH_LEGITIMATE_NAME_OR_LOCATION",
    51: "ACCOUNT_ACCESS_REMOVAL",
    52: "SERVICE_STOP",
    53: "CLOUD_INFRASTRUCTURE_DISCOVERY",
    54: "CREATE_SNAPSHOT",
    55: "DISABLE_OR_MODIFY_TOOLS",
    56: "PROCESS_DISCOVERY",
    57: "CONTAINER_AND_RESOURCE_DISCOVERY",
    58: "ADDITIONAL_CONTAINER_CLUSTER_ROLES",
    59: "PYTHON",
}


def enum_name(value: Any, numbers: Mapping[int, str]) -> str | None:
    """``"ACTIVE"``, ``"active"``, ``" Active "``, ``1`` and ``"1"`` all read as ``"ACTIVE"``; None stays None.

    An unknown number becomes ``"<NUMBER n>"`` (never one of the names, so it can never read as ACTIVE or MUTED);
    anything else that is not text (a bool, a list) is a schema error.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"an enum is a name or a number, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            return "_".join(text.replace("-", " ").replace("_", " ").upper().split()) or None
        if len(text) > 10:
            raise ValueError("enum number out of range")
        value = int(text)
    return numbers.get(value, f"<NUMBER {value}>")
