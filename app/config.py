"""Configuration, read once from the environment. The README's table documents every variable."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


class Settings(BaseModel):
    # Where the model lives. See `llm_endpoint()` for how these three are combined.
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    agent_model: str = "gpt-4.1-mini"
    # "native": the server understands `tools`. "structured": it gets a JSON schema as
    # `response_format` instead (small local models). Empty means: pick by endpoint.
    tool_mode: Literal["native", "structured", ""] = ""
    # Sampling temperature; unset leaves the provider's default.
    temperature: float | None = None

    # The embedded offline model (used when neither key nor base URL is set).
    local_model: Literal["1.5b", "0.5b"] = "1.5b"
    local_model_port: int = 9090
    local_model_threads: int = 2
    local_model_ctx: int = 8192

    sandbox_backend: Literal["local", "modal"] = "local"
    # Restart a sandbox this long before its TTL deadline (must exceed the longest command).
    sandbox_restart_margin_s: float = Field(default=300.0, gt=0)
    # Snapshot and stop a sandbox after this long without a command.
    sandbox_idle_s: float = Field(default=900.0, gt=0)
    data_dir: Path = REPO_ROOT / ".data"

    ingress_port: int = 8080
    admin_port: int = 9070
    worker_port: int = 9080
    node_port: int = 5122
    # The web UI (ui/), and where the model client posts live text for it (unset: nowhere).
    ui_port: int = 3000
    delta_url: str | None = None

    # Bounds on the agent loop and on user input.
    max_steps: int = Field(default=6, ge=1)
    max_rounds_per_step: int = Field(default=12, ge=1)
    max_message_chars: int = Field(default=16_000, ge=1)
    command_timeout_s: int = Field(default=120, ge=1)
    llm_timeout_s: float = Field(default=300.0, gt=0)
    # How long a new message waits for the interrupted task's cleanup before going on.
    interrupt_wait_s: float = Field(default=30.0, gt=0)

    # Which tool calls wait for a human: "none", "commands" (every run_command), "all" (every
    # tool but reads and finish), or "patterns" (run_command matching approval_patterns).
    approval_mode: Literal["none", "commands", "all", "patterns"] = "none"
    approval_patterns: list[str] = []
    approval_timeout_s: float = Field(default=3 * 24 * 3600.0, gt=0)  # no answer counts as a denial

    # Per-task budgets; reaching one pauses the task and asks the user to extend it.
    budget_rounds: int = Field(default=60, ge=1)
    budget_tokens: int = Field(default=400_000, ge=1)
    budget_seconds: float = Field(default=3600.0, gt=0)

    @property
    def restate_ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

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

    def sampling_temperature(self) -> float | None:
        """AGENT_TEMPERATURE if set; else 0 for the offline model (a small model sampling at
        llama.cpp's default strays: it once wrote a file's name as its content); else the
        provider's default."""
        if self.temperature is not None:
            return self.temperature
        return 0.0 if not (self.openai_base_url or self.openai_api_key) else None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings. Tests start workers with their own environment."""
    e = os.environ.get
    return Settings(
        openai_api_key=e("OPENAI_API_KEY") or None,
        openai_base_url=e("OPENAI_BASE_URL") or None,
        agent_model=_env("AGENT_MODEL", "gpt-4.1-mini"),
        tool_mode=_env("AGENT_TOOL_MODE", ""),  # type: ignore[arg-type]
        temperature=float(e("AGENT_TEMPERATURE")) if e("AGENT_TEMPERATURE") else None,
        local_model=_env("LOCAL_MODEL", "1.5b"),  # type: ignore[arg-type]
        local_model_port=int(_env("LOCAL_MODEL_PORT", "9090")),
        local_model_threads=int(_env("LOCAL_MODEL_THREADS", "2")),
        local_model_ctx=int(_env("LOCAL_MODEL_CTX", "8192")),
        sandbox_backend=_env("SANDBOX_BACKEND", "local"),  # type: ignore[arg-type]
        sandbox_restart_margin_s=float(_env("SANDBOX_RESTART_MARGIN_S", "300")),
        sandbox_idle_s=float(_env("SANDBOX_IDLE_S", "900")),
        data_dir=Path(_env("AGENT_DATA_DIR", str(REPO_ROOT / ".data"))),
        ingress_port=int(_env("RESTATE_INGRESS_PORT", "8080")),
        admin_port=int(_env("RESTATE_ADMIN_PORT", "9070")),
        worker_port=int(_env("WORKER_PORT", "9080")),
        node_port=int(_env("RESTATE_NODE_PORT", "5122")),
        ui_port=int(_env("UI_PORT", "3000")),
        delta_url=e("AGENT_DELTA_URL") or None,
        max_steps=int(_env("AGENT_MAX_STEPS", "6")),
        max_rounds_per_step=int(_env("AGENT_MAX_ROUNDS", "12")),
        max_message_chars=int(_env("AGENT_MAX_MESSAGE_CHARS", "16000")),
        command_timeout_s=int(_env("SANDBOX_COMMAND_TIMEOUT_S", "120")),
        llm_timeout_s=float(_env("LLM_TIMEOUT_S", "300")),
        interrupt_wait_s=float(_env("AGENT_INTERRUPT_WAIT_S", "30")),
        approval_mode=_env("AGENT_APPROVAL", "none"),  # type: ignore[arg-type]
        approval_patterns=[p.strip() for p in _env("AGENT_APPROVAL_PATTERNS", "").split(",") if p.strip()],
        approval_timeout_s=float(_env("AGENT_APPROVAL_TIMEOUT_S", str(3 * 24 * 3600))),
        budget_rounds=int(_env("AGENT_BUDGET_ROUNDS", "60")),
        budget_tokens=int(_env("AGENT_BUDGET_TOKENS", "400000")),
        budget_seconds=float(_env("AGENT_BUDGET_SECONDS", "3600")),
    )
