"""Settings: the only place environment variables are read.

Every operator toggle is a ``RESPONDER_*`` variable (Terraform sets them on the function). A toggle left unset is
``None`` here and the policy file decides; precedence is env > policy file > built-in defaults (see
``responder.policy.rules``).
Invalid values raise :class:`ConfigError` at cold start, and the function then refuses to act.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from responder.errors import ConfigError

Mode = Literal["dry-run", "enforce"]
ActionName = Literal["isolate", "delete", "none"]
CsvList = Annotated[list[str] | None, NoDecode]


class Settings(BaseSettings):
    """Process configuration. Field ``x`` is read from ``RESPONDER_X``; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="RESPONDER_", extra="ignore", frozen=True)

    # --- policy toggles (None: the policy file decides) ---
    mode: Mode | None = Field(default=None, description="dry-run (default) plans without writing; enforce acts")
    action: ActionName | None = Field(
        default=None, description="override every rule's containment: isolate|delete|none"
    )
    policy_file: Path | None = Field(default=None, description="policy YAML; default policy.yaml beside main.py")
    categories: CsvList = Field(
        default=None,
        description="comma-separated finding categories to handle, each one with a profile (responder/intake/"
        "categories.py): Reverse Shell (default), Added Binary Executed",
    )
    protected_namespaces: CsvList = Field(default=None, description="comma-separated namespace globs never touched")
    exempt_label: str | None = Field(default=None, description="namespaces labelled so (=true) are untouched")
    verify_finding: bool | None = Field(
        default=None, description="re-read the finding from SCC before destructive acts"
    )
    write_marks: bool | None = Field(default=None, description="record what was done as SCC security marks")
    set_inactive: bool | None = Field(default=None, description="set the finding INACTIVE after a successful delete")
    report_topic: str | None = Field(default=None, description="projects/P/topics/T receiving incident reports")
    budget_max: int | None = Field(default=None, ge=0, description="destructive actions per cluster per window")
    budget_window_s: int | None = Field(default=None, ge=60, description="blast-radius window in seconds")
    log_window_min: int | None = Field(default=None, ge=1, le=1440, description="log search window around eventTime")
    live_session: Literal["escalate", "report"] | None = Field(
        default=None,
        description="when isolation cannot cut an established reverse shell: escalate (capture, delete) or report",
    )
    identity: Literal["report", "revoke"] | None = Field(
        default=None,
        description="the quarantined pod's service account: report (what it can read and write) or revoke (delete the "
        "bindings naming it alone; release recreates them)",
    )
    netpol_enforcement: Literal["auto", "established", "new-only", "none"] = Field(
        default="auto",
        description="what NetworkPolicy does to established connections: auto (from GKE; new-only with a "
        "kubeconfig), established (Dataplane V2), new-only (Calico), none",
    )
    # --- what this deployment covers (validated as identifiers when the responder is built: responder.intake.scope)
    fleet: CsvList = Field(
        default=None,
        description="comma-separated clusters covered, each projects/P/locations/L/clusters/C; unset or empty: every "
        "cluster. A vouched finding elsewhere is recorded (outside_fleet, WARNING) and left alone",
    )
    canary_source: str | None = Field(
        default=None,
        description="organizations/O/sources/S (or projects/P/sources/S): the SCC source of the deployment's canary; "
        "a finding under it that SCC vouches for is recorded (canary, INFO) and touches nothing",
    )
    process_capture: bool = Field(
        default=True, description="exec `ps axjf` in the container (false when pods/exec is not granted)"
    )

    # --- wiring (not policy) ---
    kubeconfig: Path | None = Field(default=None, description="use this kubeconfig for every cluster (non-GKE, local)")
    budget_namespace: str = Field(default="responder-system", description="namespace holding the budget Leases")
    enrichment_timeout_s: float = Field(
        default=20.0, gt=0, le=300, description="one investigation deadline shared by every branch (seconds)"
    )
    scc_endpoint: str | None = Field(default=None, description="SCC API endpoint override (tests, private access)")
    logging_endpoint: str | None = Field(default=None, description="Cloud Logging API endpoint override")
    container_endpoint: str | None = Field(default=None, description="GKE API endpoint override")
    gke_endpoint: Literal["auto", "dns", "private", "public"] = Field(
        default="auto",
        description="control-plane endpoint: auto (DNS-based if it accepts external traffic, else public, else "
        "private), dns, private, public",
    )
    anonymous_google: bool = Field(default=False, description="use anonymous credentials (local wire fakes only)")
    google_apis: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: on in Cloud Functions/Run (K_SERVICE) or when an endpoint is overridden"
    )

    # --- set by the platform, not by operators (read here so that this stays the one place env vars are read) ---
    k_service: str | None = Field(
        default=None, validation_alias="K_SERVICE", description="set by Cloud Functions/Run: we run in Google Cloud"
    )
    pubsub_emulator_host: str | None = Field(
        default=None, validation_alias="PUBSUB_EMULATOR_HOST", description="the Pub/Sub client uses the emulator"
    )
    login_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LOGNAME", "USER"),
        description="set by the operator's shell: who runs `release`, for the SCC mark (`--by` overrides)",
    )

    @field_validator("categories", "protected_namespaces", "fleet", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


def load_settings() -> Settings:
    """Read the environment once; raise :class:`ConfigError` with every problem listed."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"RESPONDER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
