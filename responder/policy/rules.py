"""The policy file: what happens automatically, per cluster, namespace and workload.

``policy.yaml`` holds defaults and ordered rules; ``RESPONDER_*`` variables override the defaults (env > file >
built-ins). The first matching rule decides (unless it says ``continue: true``, which appends the next match's steps).
A plan is the same in dry-run and enforce; only execution differs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from responder.config import Mode, Settings
from responder.containment import registry
from responder.containment.action import Action, ActionParams
from responder.containment.isolate import IsolateParams, LiveSession
from responder.containment.keys import PROTECTED_FLOOR
from responder.containment.plan import Plan, PlannedStep, default_step, ordered, step
from responder.containment.revoke import RevokeAction
from responder.errors import ConfigError, InvalidIdentifier
from responder.intake import categories as profiles
from responder.intake import identifiers
from responder.intake.categories import DEFAULT_CATEGORIES, CategoryProfile, normalise_category
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "policy.yaml"  # beside main.py
_NAMESPACE_GLOB = re.compile(r"[a-z0-9*?]([-a-z0-9*?]{0,61}[a-z0-9*?])?")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _profiled(value: tuple[str, ...]) -> tuple[str, ...]:
    """Categories must each have a profile (``intake/categories.py``): the responder would not know what a finding of
    any other category means, and a typo ("Reverse Shel") would silently handle, or match, nothing."""
    missing = profiles.unknown(value)
    if missing:
        raise ValueError(f"no category profile for {missing[:5]!r}; categories with a profile: {profiles.known()}")
    return value


def _step_model(action: Action) -> type[ActionParams]:
    # The policy file's vocabulary is the registry: one model per action, its parameters plus the discriminator.
    discriminator: Any = Literal[action.name]  # a Literal built from the registry: known at run time only
    model = create_model(
        f"{action.name.capitalize()}Step",
        __base__=action.Params,
        __doc__=f"``- action: {action.name}`` ({', '.join(action.Params.model_fields) or 'no parameters'})",
        action=(discriminator, ...),
    )
    return cast("type[ActionParams]", model)


STEP_TYPES: dict[str, type[ActionParams]] = {name: _step_model(a) for name, a in registry.ACTIONS.items()}
if TYPE_CHECKING:
    Step = ActionParams
else:
    Step = Annotated[Union[tuple(STEP_TYPES.values())], Field(discriminator="action")]  # noqa: UP007


def _step(action: str, **params: Any) -> ActionParams:
    return STEP_TYPES[action].model_validate({"action": action, **params})


class Budget(_Strict):
    """At most ``max_actions`` destructive actions per cluster per ``window_s``, across all instances."""

    max_actions: int = Field(default=5, ge=0)
    window_s: int = Field(default=3600, ge=60)


class Defaults(_Strict):
    """Policy-wide settings; each can be overridden by a ``RESPONDER_*`` variable."""

    mode: Mode = "dry-run"
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    protected_namespaces: tuple[str, ...] = PROTECTED_FLOOR
    exempt_label: str = "responder.rsr.dev/exempt"
    budget: Budget = Budget()
    verify_finding: bool = True
    write_marks: bool = True
    set_inactive: bool = False
    log_window_min: int = Field(default=30, ge=1, le=1440)
    report_topic: str | None = None
    owner_keys: tuple[str, ...] = ("owner", "team", "contact")
    # Isolation cannot cut an established reverse shell (Calico, no enforcement, hostNetwork): escalate captures
    # evidence, then deletes the pod so its controller replaces it; report leaves it isolated for new connections.
    live_session: LiveSession = "escalate"
    capture_before_destructive: bool = True  # evidence before every delete, escalations included; false opts out
    # What is done about the quarantined pod's service account beyond refusing its token's writes (always done):
    # report lists what it can read and write; revoke adds a ``revoke`` step (its bindings deleted, reads refused too)
    # to every plan that quarantines a pod and has none of its own.
    identity: Literal["report", "revoke"] = "report"

    @field_validator("categories")
    @classmethod
    def _handled_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _profiled(value)

    @field_validator("protected_namespaces")
    @classmethod
    def _namespace_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Each entry must be able to match a namespace: a typo ("Kube-System", "prod_*") would silently protect nothing.
        bad = [v for v in value if not isinstance(v, str) or not _NAMESPACE_GLOB.fullmatch(v)]
        if bad:
            raise ValueError(
                f"protected_namespaces entries must be namespace names or globs ([a-z0-9-*?], <= 63): {bad[:5]!r}"
            )
        return value

    @field_validator("exempt_label")
    @classmethod
    def _label_key(cls, value: str) -> str:
        # It is compared with pod label keys; a value that cannot be a label key would silently exempt nothing.
        try:
            return identifiers.label_key(value)
        except InvalidIdentifier as exc:
            raise ValueError(str(exc)) from None


class Match(_Strict):
    """An AND of predicates; an empty or missing predicate matches anything. Strings accept shell globs.

    One exception: a category whose profile is not ``contained_by_default`` (Added Binary Executed) is matched only
    by a rule that names it in ``categories``; catch-all rules were written for the categories that are contained by
    default, and enabling a noisy report-only category must not put its pods under them.
    """

    categories: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    pod_labels: dict[str, str] = Field(default_factory=dict)
    node_pools: tuple[str, ...] = ()

    @field_validator("categories")
    @classmethod
    def _matchable_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _profiled(value)


class Rule(_Strict):
    """``match`` → ordered ``actions``; ``continue: true`` lets later rules add their steps too."""

    name: str = Field(min_length=1, max_length=80)
    match: Match = Match()
    actions: tuple[Step, ...] = ()
    continue_: bool = Field(default=False, alias="continue")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Policy(_Strict):
    """The whole policy file."""

    version: Literal[1] = 1
    defaults: Defaults = Defaults()
    rules: tuple[Rule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return rules


def _matches_any(value: str | None, patterns: tuple[str, ...]) -> bool:
    return not patterns or (value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns))


def rule_matches(rule: Rule, finding: Finding, target: Target, labels: Mapping[str, str]) -> bool:
    """True when every predicate of ``rule.match`` holds."""
    m = rule.match
    cats = tuple(normalise_category(c) for c in m.categories)
    if not cats and not profiles.of(finding.category).contained_by_default:
        return False  # a report-only category is contained only by a rule that names it
    return (
        _matches_any(normalise_category(finding.category), cats)
        and _matches_any(finding.severity, m.severities)
        and (_matches_any(target.cluster.project, m.projects))
        and (_matches_any(target.cluster.name, m.clusters) or _matches_any(target.cluster.path, m.clusters))
        and _matches_any(target.namespace, m.namespaces)
        and all(labels.get(k) == v for k, v in m.pod_labels.items())
        and _matches_any(finding.node_pool, m.node_pools)
    )


def _steps_for(action: str, detach: bool) -> list[ActionParams]:
    """The containment an ``RESPONDER_ACTION`` override stands for."""
    if action == "none":
        # No containment means nothing the attacker can notice either: no exec into the container.
        return [_step("capture", process_tree=False, sockets=False)]
    steps = [_step("isolate", detach=detach), _step("label"), _step("capture")]
    if action == "delete":
        steps.append(_step("delete"))
    return steps


class PolicyEngine:
    """A loaded policy with env overrides applied; turns findings into plans."""

    def __init__(self, policy: Policy, settings: Settings) -> None:
        self.policy = policy
        self.settings = settings
        d = policy.defaults
        overrides = {
            "mode": settings.mode,
            "categories": tuple(settings.categories) if settings.categories else None,
            "protected_namespaces": (
                tuple(settings.protected_namespaces) if settings.protected_namespaces is not None else None
            ),
            "exempt_label": settings.exempt_label,
            "verify_finding": settings.verify_finding,
            "write_marks": settings.write_marks,
            "set_inactive": settings.set_inactive,
            "log_window_min": settings.log_window_min,
            "live_session": settings.live_session,
            "identity": settings.identity,
            "report_topic": settings.report_topic,
            "budget": {
                "max_actions": settings.budget_max if settings.budget_max is not None else d.budget.max_actions,
                "window_s": settings.budget_window_s or d.budget.window_s,
            },
        }
        # Validated like the file itself: an env value is held to the same rules as the YAML it overrides.
        try:
            self.defaults = Defaults.model_validate(
                {**d.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
            )
        except ValidationError as exc:
            raise ConfigError(f"RESPONDER_* overrides of the policy defaults:\n{_format_errors(exc)}") from exc

    @property
    def protected_namespaces(self) -> tuple[str, ...]:
        """The floor, the budget's namespace, then what the policy and RESPONDER_PROTECTED_NAMESPACES add."""
        extra = (self.settings.budget_namespace, *self.defaults.protected_namespaces)
        return tuple(dict.fromkeys((*PROTECTED_FLOOR, *extra)))

    def protected(self, namespace: str) -> bool:
        """Protected namespaces are never touched, whatever the rules or settings say."""
        return any(fnmatch.fnmatchcase(namespace, p) for p in self.protected_namespaces)

    def plan(
        self,
        finding: Finding,
        target: Target,
        labels: Mapping[str, str],
        namespace_labels: Mapping[str, str] | None = None,
    ) -> Plan:
        """Choose the steps for this finding and pod (``labels`` are the live pod's, or the finding's).

        The exemption is read from the namespace's labels (``namespace_labels``), never from the pod's own: the
        workload, or anyone with ``pods: patch``, can label its pod, and must not be able to exempt a vouched shell.
        """
        mode = self.defaults.mode
        if finding.sample:
            return Plan(
                mode=mode, rule=None, hold="sample", skipped=("sample finding from publish-sample: report only",)
            )
        if self.protected(target.namespace):
            return Plan(
                mode=mode,
                rule=None,
                hold="protected",
                skipped=(f"namespace {target.namespace} is protected: report only",),
            )
        exempt = self.defaults.exempt_label
        if (namespace_labels or {}).get(exempt, "").lower() == "true":
            return Plan(
                mode=mode,
                rule=None,
                hold="exempt",
                skipped=(f"namespace {target.namespace} carries the exemption label {exempt}=true: report only",),
            )
        profile = profiles.of(finding.category)
        chosen, rule_names = self._chosen(finding, target, labels)
        if not rule_names and not profile.contained_by_default:
            # Before RESPONDER_ACTION: it overrides the containment rules chose, and no rule chose any for this one.
            return Plan(
                mode=mode,
                rule=None,
                hold="report_only",
                skipped=(
                    f"{profile.category} is report-only by default and no policy rule names it "
                    "(match.categories): report only",
                ),
            )
        if not rule_names:
            chosen = _steps_for("isolate", detach=False)
        rule_name = "+".join(rule_names) if rule_names else "(built-in default: isolate)"
        if self.settings.action is not None:
            detach = any(isinstance(s, IsolateParams) and s.detach for s in chosen)
            chosen = _steps_for(self.settings.action, detach)
            rule_name = f"RESPONDER_ACTION={self.settings.action}"
        steps = ordered(
            [step(self._resolved(s, profile), getattr(s, "action")) for s in chosen],  # noqa: B009 - every step model's field
            self.defaults.capture_before_destructive,
        )
        if self.defaults.identity == "revoke":
            steps = with_revoke(steps)
        if not steps:
            return Plan(
                mode=mode,
                rule=rule_name,
                hold="report_only",
                skipped=(f"rule {rule_name} has no actions: report only",),
            )
        return Plan(mode=mode, rule=rule_name, steps=tuple(steps))

    def _chosen(self, finding: Finding, target: Target, labels: Mapping[str, str]) -> tuple[list[Any], list[str]]:
        """The steps of the matching rules, and their names: the first match, and the next while one continues."""
        chosen: list[Any] = []
        rule_names: list[str] = []
        for rule in self.policy.rules:
            if rule_matches(rule, finding, target, labels):
                rule_names.append(rule.name)
                chosen.extend(rule.actions)
                if not rule.continue_:
                    break
        return chosen, rule_names

    def _resolved(self, params: Any, profile: CategoryProfile) -> Any:
        """An isolate step without its own ``live_session`` takes the policy's (so the plan says what will happen);
        not for a category whose threat is not a live session (nothing escalates for one: see ``runner.escalates``)."""
        if isinstance(params, IsolateParams) and params.live_session is None and profile.live_session:
            return params.model_copy(update={"live_session": self.defaults.live_session})
        return params


def with_revoke(steps: list[PlannedStep]) -> list[PlannedStep]:
    """``identity: revoke``: a plan that quarantines the pod gets a ``revoke`` step (unless it has one), ahead of any
    step that ends the pod (after it, the account would be revoked from the replacement only)."""
    names = [s.action for s in steps]
    if RevokeAction.name in names or not any(registry.traits(n).quarantines for n in names):
        return steps
    at = next((i for i, n in enumerate(names) if registry.traits(n).ends_pod), len(steps))
    return [*steps[:at], default_step(RevokeAction.name), *steps[at:]]


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {err['loc'][-1]!r}{_valid_keys_hint(err['loc'])}"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown action; valid actions: {', '.join(sorted(STEP_TYPES))}"
        lines.append(f"{loc}: {msg}")
    return "\n".join(lines)


def _valid_keys_hint(loc: tuple[int | str, ...]) -> str:
    # Walk the location to the model that rejected the key, so the message lists what would have been accepted.
    model: Any = Policy
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if part in STEP_TYPES:
            model = STEP_TYPES[part]
            continue
        field = getattr(model, "model_fields", {}).get(part) or next(
            (f for f in getattr(model, "model_fields", {}).values() if f.alias == part), None
        )
        if field is None:
            return ""
        ann = field.annotation
        for candidate in getattr(ann, "__args__", ()) or (ann,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    keys = sorted((f.alias or n) for n, f in getattr(model, "model_fields", {}).items())
    return f"; valid keys: {', '.join(keys)}" if keys else ""


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse YAML text into a :class:`Policy`; :class:`ConfigError` carries every problem with its location."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {clean(exc, 300)}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid policy:\n{_format_errors(exc)}") from exc


def load_policy(path: Path | None) -> Policy:
    """Read the policy file (default: ``policy.yaml`` beside ``main.py``; built-in defaults when that is absent)."""
    explicit = path is not None
    path = path or DEFAULT_POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        if explicit:
            raise ConfigError(f"policy file {path} does not exist") from exc
        return Policy()
    except OSError as exc:
        raise ConfigError(f"policy file {path} cannot be read: {exc}") from exc
    return parse_policy(text, str(path))


def json_schema() -> dict[str, Any]:
    """The policy's JSON Schema, for editor completion (``python -m responder schema``)."""
    return Policy.model_json_schema(by_alias=True)
