"""A circuit breaker that serves sessions from a local fallback store while the primary is down.

Made by ``open_store(spec, fallback="memory")`` (see :func:`sessionstore.open_store`); the store
exposes it as :attr:`SessionStore.fallback <sessionstore.SessionStore.fallback>`. The lifecycle:

* **closed**: every operation goes to the primary. Consecutive
  :class:`~sessionstore.StoreUnavailableError` from the primary are counted (any other outcome
  resets the count; other errors propagate unchanged and never count). Meanwhile a bounded copy
  of the records the primary returned or accepted is kept (:mod:`.last_known`), which never goes
  back past a version this instance acknowledged, so that a session in use can still be served
  once the primary is gone.
* **open**: after ``failures`` failures in a row. The call that hit the threshold and every later
  one are served from the fallback backend without contacting the primary; each session the
  fallback serves enters the outage journal (:mod:`.journal`). Namespace-wide operations (count,
  list, purge, clear) raise :class:`~sessionstore.StoreUnavailableError`: the fallback holds only
  the sessions used during the outage. A session neither in the fallback nor in the copy raises
  it too, naming the id, rather than claiming the session does not exist.
* **half-open**: the first operation ``probe_after`` seconds after opening starts reconciliation
  (:mod:`.reconcile`) in the background and goes on at once: sessions still in the journal are
  served by the fallback, all others by the primary. Reconciliation writes each journaled session
  onto the primary by compare-and-set and takes it out of the journal; when the journal is empty
  and the primary has answered, the circuit closes. Any unavailability of the primary opens the
  circuit again for another ``probe_after`` seconds; what was reconciled stays so.

Reconciliation never overwrites silently: whatever another writer changed on the primary in the
meantime is kept, and the write that could not be applied is reported as a
:class:`FallbackConflict`. A write whose reply was lost (applied by the primary, then served again
by the fallback) is recognised, however many outage writes followed it.

Everything here is per store instance, in this process: two instances each have their own
fallback, and neither sees what the other wrote during an outage until reconciliation.
"""

from .middleware import FallbackMiddleware, ReconcileOutcome
from .options import FALLBACK_OPTIONS, check_fallback_options
from .reconcile import MAX_CONFLICTS_KEPT, FallbackConflict

__all__ = [
    "FALLBACK_OPTIONS",
    "MAX_CONFLICTS_KEPT",
    "FallbackConflict",
    "FallbackMiddleware",
    "ReconcileOutcome",
    "check_fallback_options",
]
