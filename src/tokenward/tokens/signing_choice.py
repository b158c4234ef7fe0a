"""Which algorithm signs an access token: the client's own (`access_token_alg`), else its
audience's, else the deployment's. Crypto agility per resource: a PQC-ready API gets ML-DSA
tokens while a legacy one keeps ES256, from the same server at the same time.

Settings give the starting point (TOKENWARD_SIGNING_ALG, TOKENWARD_AUDIENCE_SIGNING_ALGS);
`tokenward keys migrate` stores `SigningChoice`s that override them from their `switch_at` on,
so every node switches at the same moment, without a restart, once the new key has been
published long enough for caches to know it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from tokenward.core.records import SigningChoice

DEFAULT_AUDIENCE = ""  # a stored choice for the deployment's default


class SigningPolicy:
    def __init__(
        self,
        default: str,
        audiences: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        choices: Iterable[SigningChoice] = (),
    ) -> None:
        self._default = default
        self._audiences = dict(audiences or {})
        self._clock = clock
        self._choices: dict[str, SigningChoice] = {}
        self.update(choices)

    def update(self, choices: Iterable[SigningChoice]) -> None:
        """Take in the stored choices (the key schedule reloads them with the keys)."""
        self._choices = {choice.audience: choice for choice in choices}

    def choices(self) -> list[SigningChoice]:
        return sorted(self._choices.values(), key=lambda choice: choice.audience)

    def default_alg(self) -> str:
        return self._effective(DEFAULT_AUDIENCE, self._default)

    def audience_alg(self, audience: str) -> str | None:
        """The algorithm one audience asks for; None when it follows the deployment's."""
        configured = self._audiences.get(audience)
        if audience in self._choices:
            return self._effective(audience, configured or self.default_alg())
        return configured

    def access_token_alg(self, audience: Sequence[str], client_alg: str | None = None) -> str:
        """The client's pin wins; then the first of the token's audiences that has a choice
        (a token for several audiences is signed once, so one of them decides); then the
        deployment's algorithm."""
        if client_alg is not None:
            return client_alg
        for name in audience:
            chosen = self.audience_alg(name)
            if chosen is not None:
                return chosen
        return self.default_alg()

    def in_use(self) -> frozenset[str]:
        """Every algorithm a choice signs with now, or will sign with or still signs with until
        a pending switch: keyrings outside this set (and the kept set) may retire."""
        now = self._clock()
        configured = {DEFAULT_AUDIENCE: self._default, **self._audiences}
        used: set[str] = set()
        for audience in configured.keys() | self._choices.keys():
            choice = self._choices.get(audience)
            start = configured.get(audience, self._default)
            if choice is None:
                used.add(start)
            elif now < choice.switch_at:
                used |= {choice.previous or start, choice.alg}
            else:
                used.add(choice.alg)
        return frozenset(used)

    def _effective(self, audience: str, configured: str) -> str:
        choice = self._choices.get(audience)
        if choice is None:
            return configured
        if self._clock() >= choice.switch_at:
            return choice.alg
        return choice.previous or configured
