"""What every HTTP tracker adapter (linear, github, gitlab, jira, asana) holds the same way:
its credential, one httpx client and the request wrapper over ``http.request_json``.

The constructor asks the subclass to check its whole ``tracker.provider`` block
(``_configure``) before it resolves the secret: ``symphonyctl workflow check`` relies on
every key being validated before a missing credential can stop the check (provider_check.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx

from symphonyd.tracker.adapter import TrackerAdapter
from symphonyd.tracker.credentials import resolve_secret, secret_reference
from symphonyd.tracker.http import HttpPolicy, JsonResponse, Sleep, make_client, request_json
from symphonyd.tracker.provider_config import TrackerSettings


class HttpTrackerAdapter(TrackerAdapter):
    # The environment/credential name ``api_key`` defaults to (e.g. GITLAB_TOKEN).
    default_secret: ClassVar[str]
    # Statuses a read treats as "not visible" rather than an error.
    absent_statuses: ClassVar[tuple[int, ...]] = (404,)

    def __init__(
        self,
        settings: TrackerSettings,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        tool_states, policy = self._configure(settings.provider)
        super().__init__(settings, tool_states)
        p = settings.provider
        self.policy = policy
        self._secret_names = [secret_reference(p, "api_key", self.default_secret)]
        # The credential as stored; a subclass may derive its header from it (jira).
        self._token = resolve_secret(
            p, "api_key", self.default_secret, env, settings.unit_credential
        )
        self.secrets = (self._token,)
        self._credential_ready()
        self._client = make_client(policy, transport)
        self._sleep = sleep

    @abstractmethod
    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        """Check the whole provider block (no network, no secret) and keep what the adapter
        needs; returns the tool states and the HTTP policy."""

    def _credential_ready(self) -> None:
        """Called once the credential is resolved (jira derives its Basic header here)."""

    def secret_environment_names(self) -> list[str]:
        return list(self._secret_names)

    async def aclose(self) -> None:
        await self._client.aclose()

    @abstractmethod
    def _headers(self) -> dict[str, str]:
        """The provider's auth and content headers for every request."""

    async def _call(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        body: Any = None,
        idempotent: bool = True,
        ok: tuple[int, ...] = (200, 201),
        absent: tuple[int, ...] | None = None,
        body_check: Callable[[JsonResponse], None] | None = None,
    ) -> JsonResponse:
        """One exchange under this adapter's policy; ``absent`` defaults to the class's."""
        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        return await request_json(
            self._client,
            method,
            url,
            policy=self.policy,
            headers=self._headers(),
            json_body=body,
            params=params,
            idempotent=idempotent,
            ok_statuses=ok,
            absent_statuses=self.absent_statuses if absent is None else absent,
            body_check=body_check,
            **kwargs,
        )
