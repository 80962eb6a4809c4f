"""The circuit breaker: when the fallback stops calling the primary, and when it tries again.

It decides and counts; it does no I/O. The middleware asks it where a call goes and tells it how
each call to the primary ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from ..errors import StoreUnavailableError
from ..urls import redact_text

__all__ = ["CircuitBreaker", "CircuitState"]

log = logging.getLogger("sessionstore.fallback")

CircuitState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """The state of the circuit in front of one primary.

    * ``closed``: the primary serves. :meth:`failed` counts unavailability in a row; any other
      outcome (:meth:`succeeded`) resets the count. At ``failures`` in a row the circuit opens.
    * ``open``: the fallback serves and the primary is not called. Once :meth:`probe_due`, the
      middleware calls :meth:`begin_probe`.
    * ``half-open``: reconciliation runs and the primary is tried again. One failure opens the
      circuit again for another ``probe_after`` seconds; :meth:`close` ends it once the primary
      has answered (:attr:`answered`) and nothing is left to reconcile.

    ``outage`` numbers the outages (closed to open) of this breaker, from 1.
    """

    def __init__(
        self,
        *,
        failures: int,
        probe_after: float,
        clock: Callable[[], float],
        primary_name: str,
        fallback_name: str,
    ) -> None:
        self.threshold = failures
        self.probe_after = probe_after
        self._clock = clock
        self._primary_name = primary_name
        self._fallback_name = fallback_name
        self.state: CircuitState = "closed"
        self.failures_in_row = 0
        self.probe_at = 0.0
        self.outage = 0
        self.answered = False
        """Whether the primary answered a call since the circuit went half-open."""

    def succeeded(self) -> None:
        """The primary answered a call (with a result or an error that is not unavailability)."""
        self.failures_in_row = 0
        if self.state == "half-open":
            self.answered = True

    def failed(self, exc: StoreUnavailableError) -> None:
        """The primary could not be reached: count it, and open the circuit at the threshold
        (closed) or at once (half-open). A failure while open (a call that started earlier)
        changes nothing."""
        self.failures_in_row += 1
        if self.state == "closed" and self.failures_in_row >= self.threshold:
            self.outage += 1
            log.warning(
                "primary store %r unavailable after %d failure(s) in a row (%s); serving "
                "sessions from fallback %r, probing again in %gs",
                self._primary_name,
                self.failures_in_row,
                redact_text(str(exc)),
                self._fallback_name,
                self.probe_after,
            )
            self._open()
        elif self.state == "half-open":
            log.info(
                "primary store %r still unavailable (%s); probing again in %gs",
                self._primary_name,
                redact_text(str(exc)),
                self.probe_after,
            )
            self._open()

    def probe_due(self) -> bool:
        """Whether the circuit is open and ``probe_after`` seconds have passed since it opened."""
        return self.state == "open" and self._clock() >= self.probe_at

    def begin_probe(self) -> None:
        """Go half-open: the primary is tried again."""
        self.state = "half-open"
        self.answered = False

    def close(self) -> None:
        """Go closed: the primary serves everything again."""
        self.state = "closed"
        self.failures_in_row = 0

    def _open(self) -> None:
        self.state = "open"
        self.probe_at = self._clock() + self.probe_after
