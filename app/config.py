"""Configuration, read once from the environment. The README's table documents every variable.

Every setting of the product is a field of a pydantic-settings class that names its variable
next to its one default: `Settings` here (the worker, the UI and the supervisor), and the
sandbox backends' `LocalLimits` (`SANDBOX_*`) and `ModalLimits` (`MODAL_SANDBOX_*`). A blank
variable means unset; a bad value stops the process at start with the variable's name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.context import answer_tokens

REPO_ROOT = Path(__file__).resolve().parent.parent


def env(name: str, default: Any, **constraints: Any) -> Any:
    """A setting read from the environment variable `name`, with its default."""
    return Field(default=default, validation_alias=name, **constraints)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True, populate_by_name=True, extra="ignore")

    # Where the model lives. See `llm_endpoint()` for how these three are combined.
    openai_api_key: str | None = env("OPENAI_API_KEY", None)
    openai_base_url: str | None = env("OPENAI_BASE_URL", None)
    agent_model: str = env("AGENT_MODEL", "gpt-4.1-mini")
    # "native": the server understands `tools`. "structured": it gets a JSON schema as
    # `response_format` instead (small local models). Empty means: pick by endpoint.
    tool_mode: Literal["native", "structured", ""] = env("AGENT_TOOL_MODE", "")
    # Sampling temperature; unset leaves the provider's default.
    temperature: float | None = env("AGENT_TEMPERATURE", None)
    # The model's context window in tokens; unset: see `model_context_tokens()`.
    context_tokens: int | None = env("AGENT_CONTEXT_TOKENS", None, ge=1024)
    # The most tokens one model answer may take (max_tokens); unset: the room the window keeps
    # for the answer with the offline model (a quarter of it), no limit sent to a provider.
    max_answer_tokens: int | None = env("AGENT_MAX_ANSWER_TOKENS", None, ge=16)

    # The embedded offline model (used when neither key nor base URL is set).
    local_model: Literal["1.5b", "0.5b"] = env("LOCAL_MODEL", "1.5b")
    local_model_port: int = env("LOCAL_MODEL_PORT", 9090)
    local_model_threads: int = env("LOCAL_MODEL_THREADS", 2, ge=1)
    local_model_ctx: int = env("LOCAL_MODEL_CTX", 8192, ge=1024)
    # Speculative decoding: "ngram" drafts tokens by looking the last few up in the prompt and
    # the answer so far (a model rewriting a file or a docstring repeats them); "none" is off.
    local_model_draft: Literal["none", "ngram"] = env("LOCAL_MODEL_DRAFT", "none")
    # Where the verified weights are kept: outside the repo, so a fresh clone or `git clean`
    # does not cost a re-download.
    model_cache: Path = env("AGENT_MODEL_CACHE", Path.home() / ".cache" / "durable-coding-agent" / "models")

    sandbox_backend: Literal["local", "modal"] = env("SANDBOX_BACKEND", "local")
    # Restart a sandbox this long before its TTL deadline (must exceed the longest command).
    sandbox_restart_margin_s: float = env("SANDBOX_RESTART_MARGIN_S", 300.0, gt=0)
    # Snapshot and stop a sandbox after this long without a command.
    sandbox_idle_s: float = env("SANDBOX_IDLE_S", 900.0, gt=0)
    data_dir: Path = env("AGENT_DATA_DIR", REPO_ROOT / ".data")
    # The node config files of `python -m stack run --nodes 3` (docs/deploy.md).
    cluster_dir: Path = env("AGENT_CLUSTER_DIR", REPO_ROOT / "cluster")

    ingress_port: int = env("RESTATE_INGRESS_PORT", 8080)
    # Where the web UI finds the ingress when it is not on this machine (a container beside
    # Restate's), or several, comma separated (a cluster's nodes, tried in turn when one cannot
    # be reached); unset: 127.0.0.1 at RESTATE_INGRESS_PORT.
    ingress_url: str | None = env("RESTATE_INGRESS_URL", None)
    admin_port: int = env("RESTATE_ADMIN_PORT", 9070)
    worker_port: int = env("WORKER_PORT", 9080)
    # How Restate talks to the worker: "bidi", one HTTP/2 stream per invocation, or
    # "request-response", one request per step (serverless platforms, HTTP/1.1-only hosts).
    worker_protocol: Literal["bidi", "request-response"] = env("WORKER_PROTOCOL", "bidi")
    # Restate's request-signing public keys (`publickeyv1_...`, comma-separated). Set: the worker
    # answers 401 to any request not signed by one of them (stack/identity.py makes the pair).
    identity_keys: Annotated[list[str], NoDecode] = env("WORKER_IDENTITY_KEYS", [])
    # Where the worker listens (stack/worker.py sets it from --bind). A worker that anyone but
    # this machine can reach (bound beyond loopback, or request-response on a serverless host)
    # refuses to start without identity keys, unless WORKER_ALLOW_UNSIGNED=1 says so on purpose.
    worker_bind: str = env("WORKER_BIND", "")
    allow_unsigned: bool = env("WORKER_ALLOW_UNSIGNED", False)
    node_port: int = env("RESTATE_NODE_PORT", 5122)
    # The code version this worker serves (set by the supervisor): it answers only under
    # /<version>/, the path of its own deployment (app/deployment.py).
    worker_version: str = env("WORKER_VERSION", "")
    # The web UI (ui/): its port, an optional access token, and how often it polls the event
    # log; and where the model client posts live text for it (unset: nowhere).
    ui_port: int = env("UI_PORT", 3000)
    # Where the UI listens. Anything but loopback needs a token (the UI refuses to start without).
    ui_host: str = env("UI_HOST", "127.0.0.1")
    # Each token is one user; a session belongs to the token that sent its first message.
    ui_token: str = env("UI_TOKEN", "")
    ui_tokens: Annotated[list[str], NoDecode] = env("UI_TOKENS", [])
    # Admin tokens are users too, who may also open every session: those nobody owns (made through
    # the ingress, or before the UI had tokens) answer no other token.
    ui_admin_tokens: Annotated[list[str], NoDecode] = env("UI_ADMIN_TOKENS", [])
    # Host names the UI answers to besides loopback, addresses and UI_HOST (a proxy's public
    # name); "*": any. Any other Host is refused, so a DNS-rebound page reads nothing.
    ui_allowed_hosts: Annotated[list[str], NoDecode] = env("UI_ALLOWED_HOSTS", [])
    ui_poll_ms: float = env("UI_POLL_MS", 100.0, gt=0)
    delta_url: str | None = env("AGENT_DELTA_URL", None)
    # Shown by the worker with every delta, checked by the UI (`make run` makes one per run);
    # unset, the UI takes no deltas.
    delta_secret: str = env("AGENT_DELTA_SECRET", "")

    # Bounds on the agent loop and on user input.
    max_steps: int = env("AGENT_MAX_STEPS", 6, ge=1)
    max_rounds_per_step: int = env("AGENT_MAX_ROUNDS", 12, ge=1)
    max_message_chars: int = env("AGENT_MAX_MESSAGE_CHARS", 16_000, ge=1)
    command_timeout_s: int = env("SANDBOX_COMMAND_TIMEOUT_S", 120, ge=1)
    # Imports (Agent/{s}/import): caps on an archive's or a clone's uncompressed content, and
    # the author of exported commits (Agent/{s}/export) unless the request names one.
    import_max_bytes: int = env("AGENT_IMPORT_MAX_BYTES", 100_000_000, ge=1)
    import_max_files: int = env("AGENT_IMPORT_MAX_FILES", 20_000, ge=1)
    export_author_name: str = env("AGENT_EXPORT_AUTHOR_NAME", "Coding Agent")
    export_author_email: str = env("AGENT_EXPORT_AUTHOR_EMAIL", "agent@localhost")
    llm_timeout_s: float = env("LLM_TIMEOUT_S", 300.0, gt=0)
    # How long a new message waits for the interrupted task's cleanup before going on.
    interrupt_wait_s: float = env("AGENT_INTERRUPT_WAIT_S", 30.0, gt=0)

    # Which tool calls wait for a human: "none", "commands" (every run_command), "all" (every
    # tool but reads and finish), or "patterns" (run_command matching approval_patterns,
    # comma-separated regular expressions).
    approval_mode: Literal["none", "commands", "all", "patterns"] = env("AGENT_APPROVAL", "none")
    approval_patterns: Annotated[list[str], NoDecode] = env("AGENT_APPROVAL_PATTERNS", [])
    approval_timeout_s: float = env("AGENT_APPROVAL_TIMEOUT_S", 3 * 24 * 3600.0, gt=0)  # no answer = denial

    # A checkpoint (a workspace snapshot to rewind or fork from) at the end of "every" step,
    # only of steps that "changed" the workspace, or "off".
    checkpoints: Literal["every", "changed", "off"] = env("AGENT_CHECKPOINTS", "every")

    # Planning: "model" asks the model for a plan every time; "auto" splits the request by rule,
    # one step per part (app/brain/planning.py), without a planning round. Empty: "auto" for the
    # offline model (a plan round costs it seconds, and its split plans made it worse), else "model".
    planning: Literal["auto", "model", ""] = env("AGENT_PLANNING", "")
    # "on": with nothing for the harness to check, a finish is refused once for each of: a named
    # Python file missing, tests asked for and none written, "run"/"test" said and nothing run
    # (app/brain/gate.py). The harness's own checks run either way. Empty: "on" offline, else "off".
    finish_check: Literal["on", "off", ""] = env("AGENT_FINISH_CHECK", "")
    # "loop": the model chooses each action (tool calls) until the step's checks pass.
    # "pipeline": a fixed path for the smallest model: request and named files → whole files
    # as text → the harness's checks → repair or resample. Empty: "pipeline" for the embedded
    # 0.5B, else "loop".
    agent_mode: Literal["loop", "pipeline", ""] = env("AGENT_MODE", "")
    # How long a step tries to make its checks pass: failed finishes before it ends failed, and
    # fresh samples of the failing file (after AGENT_RESAMPLE_AFTER failed finishes).
    check_failures: int = env("AGENT_CHECK_FAILURES", 6, ge=1)
    resample_after: int = env("AGENT_RESAMPLE_AFTER", 2, ge=1)
    resamples: int = env("AGENT_RESAMPLES", 2, ge=0)

    # A streamed answer is cut past these (app/brain/degeneration.py) and asked once more with
    # other sampling: characters, and seconds of generation (unset: 90 for the embedded model,
    # none for a provider).
    answer_max_chars: int = env("AGENT_ANSWER_MAX_CHARS", 50_000, ge=100)
    round_max_seconds: float | None = env("AGENT_ROUND_MAX_SECONDS", None, gt=0)

    # Per-task budgets; reaching one pauses the task and asks the user to extend it.
    budget_rounds: int = env("AGENT_BUDGET_ROUNDS", 60, ge=1)
    budget_tokens: int = env("AGENT_BUDGET_TOKENS", 400_000, ge=1)
    budget_seconds: float = env("AGENT_BUDGET_SECONDS", 3600.0, gt=0)

    @field_validator("approval_patterns", "ui_tokens", "ui_admin_tokens", "ui_allowed_hosts", "identity_keys",
                     mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("identity_keys")
    @classmethod
    def _restate_key_format(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not key.startswith("publickeyv1_"):
                raise ValueError(f"expected Restate's publickeyv1_<base58> format, got {key[:20]!r}")
        return keys

    @property
    def ui_token_list(self) -> list[str]:
        """Every token the web UI accepts: UI_TOKEN, each of UI_TOKENS and of UI_ADMIN_TOKENS."""
        return list(dict.fromkeys(t for t in [self.ui_token.strip(), *self.ui_tokens, *self.ui_admin_tokens] if t))

    @property
    def restate_ingresses(self) -> list[str]:
        """The ingress URLs to use, in order: RESTATE_INGRESS_URL may list several, comma
        separated (a cluster's nodes: any node's ingress serves any session)."""
        urls = [u.strip().rstrip("/") for u in (self.ingress_url or "").split(",") if u.strip()]
        return urls or [f"http://127.0.0.1:{self.ingress_port}"]

    @property
    def sandbox_root(self) -> Path:
        return self.data_dir / "sandboxes"

    def llm_endpoint(self) -> tuple[str | None, str, str, Literal["native", "structured"]]:
        """(base_url, api_key, model, tool_mode) by the selection rules in the README."""
        if self.openai_base_url:
            return (self.openai_base_url, self.openai_api_key or "unused", self.agent_model,
                    self.tool_mode or "native")
        if self.openai_api_key:
            return (None, self.openai_api_key, self.agent_model, self.tool_mode or "native")
        return (f"http://127.0.0.1:{self.local_model_port}/v1", "unused", f"qwen2.5-coder-{self.local_model}",
                self.tool_mode or "structured")

    def model_context_tokens(self) -> int:
        """AGENT_CONTEXT_TOKENS if set; else the offline model's context (LOCAL_MODEL_CTX), or
        128k tokens for a provider's model."""
        if self.context_tokens is not None:
            return self.context_tokens
        return self.local_model_ctx if not (self.openai_base_url or self.openai_api_key) else 128_000

    def answer_token_limit(self) -> int | None:
        """max_tokens for every model round. The offline model gets the answer room its window
        keeps (app/context.py): a small model can run on writing one file until its context is
        full, which on 2 CPUs is a quarter of an hour for one round. A provider's model gets
        none unless AGENT_MAX_ANSWER_TOKENS says so (reasoning models reject max_tokens)."""
        if self.max_answer_tokens is not None:
            return self.max_answer_tokens
        return answer_tokens(self.model_context_tokens()) if self.offline() else None

    def offline(self) -> bool:
        """Whether the embedded offline model answers (neither a key nor a base URL is set)."""
        return not (self.openai_base_url or self.openai_api_key)

    def planning_mode(self) -> Literal["auto", "model"]:
        return self.planning or ("auto" if self.offline() else "model")

    def finish_check_mode(self) -> Literal["on", "off"]:
        return self.finish_check or ("on" if self.offline() else "off")

    def mode(self) -> Literal["loop", "pipeline"]:
        return self.agent_mode or ("pipeline" if self.offline() and self.local_model == "0.5b" else "loop")

    def sampling_temperature(self) -> float | None:
        """AGENT_TEMPERATURE if set; else 0 for the offline model (a small model sampling at
        llama.cpp's default strays: it once wrote a file's name as its content); else the
        provider's default."""
        if self.temperature is not None:
            return self.temperature
        return 0.0 if not (self.openai_base_url or self.openai_api_key) else None


class TaskSettings(BaseModel):
    """The settings one task runs with. A task journals them in its first step and uses only
    those: a worker restarted with another AGENT_APPROVAL or AGENT_MAX_STEPS must not change
    which steps a replay takes (that breaks the replay), nor the rules a running task was
    started under."""

    max_steps: int
    max_rounds_per_step: int
    command_timeout_s: int
    approval_mode: Literal["none", "commands", "all", "patterns"]
    approval_patterns: list[str]
    approval_timeout_s: float
    budget_rounds: int
    budget_tokens: int
    budget_seconds: float
    # The model's context window in tokens: a step's messages are kept within it.
    context_tokens: int
    checkpoints: Literal["every", "changed", "off"]
    # Defaults for tasks journaled before these existed: what those tasks did.
    planning: Literal["auto", "model"] = "model"
    finish_check: Literal["on", "off"] = "off"
    tool_mode: Literal["native", "structured"] = "native"
    agent_mode: Literal["loop", "pipeline"] = "loop"
    check_failures: int = 6
    resample_after: int = 2
    resamples: int = 2

    @classmethod
    def of(cls, config: Settings) -> TaskSettings:
        derived = {"context_tokens": config.model_context_tokens(), "planning": config.planning_mode(),
                   "finish_check": config.finish_check_mode(), "tool_mode": config.llm_endpoint()[3],
                   "agent_mode": config.mode()}
        return cls.model_validate(
            {name: getattr(config, name) for name in cls.model_fields if name not in derived} | derived)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings. Tests start workers with their own environment."""
    return Settings()
