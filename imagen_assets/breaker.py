"""A circuit breaker per provider, and the refused-API-key alert (docs/reliability.md P7, P4).

When a provider stops answering, every job that calls it would otherwise fail one attempt
after another (connect errors, timeouts, 5xx) until its retries are spent. The breaker
notices instead, and makes the jobs wait without spending anything::

    closed     -> open        BREAKER_THRESHOLD transient failures in a row  (failed)
    open       -> half_open   the cool-down (BREAKER_COOLDOWN) is over; the first
                              job that asks becomes the one probe             (admit)
    half_open  -> closed      the probe got an answer                         (answered)
    half_open  -> open        the probe failed; another cool-down            (failed)
    any        -> closed      any call got an answer                          (answered)

Only transient failures count (:attr:`ProviderError.unanswered`): no answer at all, or a 5xx.
Any answer, a 4xx included, shows the provider is up. While open, :func:`admit` answers
with a :class:`Wait`, and the jobs reschedule themselves for then (not failing, not counting
an attempt); a task whose deadline passes meanwhile still fails, saying why.

A 401 or 403 (:attr:`ProviderError.key_refused`) is a configuration problem, not a failed
image: :func:`key_refused` records it (logged at ERROR once, shown in the admin) until a
call succeeds again.

The state is a database row per provider (:class:`~imagen_assets.models.ProviderHealth`),
so every worker shares it, the admin shows it without asking Redis, and it survives Redis
losing everything (the reconciler rebuilds the jobs from the database, which still knows
the provider was down). A call costs one indexed read before it and one conditional
update after it, which changes a row only when there is news. The functions that read the
clock take ``now``, so tests can move it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import formats, timezone
from django.utils.translation import gettext

from imagen_assets import conf
from imagen_assets.models import ProviderHealth
from imagen_assets.providers.errors import ProviderError
from imagen_assets.status import BreakerState

logger = logging.getLogger(__name__)

#: Longest a job waits before looking again while another job's probe is under way.
PROBE_RECHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Wait:
    """Do not call provider ``name`` before ``until``; it has not answered since ``since``."""

    until: datetime
    name: str
    since: datetime

    @property
    def reason(self) -> str:
        """ "Wave is not answering since 14:02; new jobs wait until it recovers." """
        return outage_text(self.name, self.since)

    def gave_up(self, minutes: float) -> str:
        """Why a task that waited past its deadline fails."""
        return gettext(
            "%(provider)s has not been answering since %(since)s; the task could not be "
            "sent within the %(minutes)g minutes it may take."
        ) % {"provider": self.name, "since": _clock(self.since), "minutes": minutes}

    def delay(self, now: datetime | None = None) -> float:
        """Seconds to wait from ``now``, with jitter so waiting jobs do not all wake at once."""
        now = now or timezone.now()
        spread = min(PROBE_RECHECK_SECONDS, float(conf.get("BREAKER_COOLDOWN")) / 4)
        return max(1.0, (self.until - now).total_seconds()) + random.uniform(0, spread)


def admit(
    alias: str, name: str, *, probe_seconds: float, now: datetime | None = None
) -> Wait | None:
    """May a job call provider ``alias`` (named ``name`` in messages) now?

    None: yes (the breaker is closed, or this caller is the one half-open probe, which holds
    the probe for ``probe_seconds``: the call's deadline and some slack). A :class:`Wait`:
    not before its time.
    """
    now = now or timezone.now()
    health = _health(alias)
    if health is None or health.state == BreakerState.CLOSED:
        return None
    if health.retry_at is None or health.retry_at <= now:
        # The cool-down is over (or a probe's claim lapsed: its worker died): one probe.
        claimed = ProviderHealth.objects.filter(
            pk=health.pk, state=health.state, retry_at=health.retry_at
        ).update(state=BreakerState.HALF_OPEN, retry_at=now + timedelta(seconds=probe_seconds))
        if claimed:
            logger.info("Provider %s: trying one call after its cool-down", alias)
            return None
        health.refresh_from_db()
        if health.state == BreakerState.CLOSED:
            return None
    until = health.retry_at or now
    if health.state == BreakerState.HALF_OPEN:
        until = min(until, now + timedelta(seconds=PROBE_RECHECK_SECONDS))
    return Wait(until=until, name=name, since=health.failing_since or health.updated_at)


def release_probe(alias: str, *, now: datetime | None = None) -> None:
    """A caller :func:`admit` let through ended without calling ``alias`` (it lost its
    claim, refused the attempt, or raised before the call): if it held the half-open probe,
    hand the probe on at once instead of leaving the provider "not answering" until the
    probe's claim lapses. Nothing changes when the breaker is closed or open."""
    ProviderHealth.objects.filter(provider=alias, state=BreakerState.HALF_OPEN).update(
        state=BreakerState.OPEN, retry_at=now or timezone.now()
    )


def _health(alias: str) -> ProviderHealth | None:
    return ProviderHealth.objects.filter(provider=alias).first()


def answered(alias: str) -> None:
    """A call to ``alias`` got an answer (any HTTP status below 500 that is not a refused
    key): close the breaker and clear a refused-key alert. Writes only when there is
    something to clear."""
    changed = (
        ProviderHealth.objects.filter(provider=alias)
        .exclude(state=BreakerState.CLOSED, failures=0, key_refused_at__isnull=True)
        .update(
            state=BreakerState.CLOSED,
            failures=0,
            failing_since=None,
            retry_at=None,
            key_refused_at=None,
            key_refused_message="",
            updated_at=timezone.now(),
        )
    )
    if changed:
        logger.info("Provider %s is answering again", alias)


def failed(alias: str, error: ProviderError, *, now: datetime | None = None) -> BreakerState:
    """A call to ``alias`` got no answer, or a 5xx: count it, and open the breaker after
    ``BREAKER_THRESHOLD`` in a row, or at once when it was the half-open probe. Returns the
    state after."""
    now = now or timezone.now()
    threshold = int(conf.get("BREAKER_THRESHOLD"))
    cooldown = timedelta(seconds=float(conf.get("BREAKER_COOLDOWN")))
    with transaction.atomic():
        health, _ = ProviderHealth.objects.select_for_update().get_or_create(provider=alias)
        health.failures += 1
        health.failing_since = health.failing_since or now
        health.last_error = str(error)[:1000]
        opens = health.state == BreakerState.HALF_OPEN or (
            health.state == BreakerState.CLOSED and health.failures >= threshold
        )
        if opens:
            health.state = BreakerState.OPEN
            health.retry_at = now + cooldown
        health.save()
    if opens:
        logger.warning(
            "Provider %s is not answering (%d failures in a row, the last: %s); its jobs "
            "wait %g s before one call tries again",
            alias,
            health.failures,
            error,
            cooldown.total_seconds(),
        )
    return BreakerState(health.state)


def key_refused(alias: str, error: ProviderError, *, now: datetime | None = None) -> None:
    """The provider refused the API key: raise the configuration alert, logged at ERROR
    once (until a call succeeds again). The provider answered, so the breaker closes."""
    now = now or timezone.now()
    message = str(error)[:1000]
    health, _ = ProviderHealth.objects.get_or_create(provider=alias)
    raised = ProviderHealth.objects.filter(pk=health.pk, key_refused_at__isnull=True).update(
        key_refused_at=now,
        key_refused_message=message,
        state=BreakerState.CLOSED,
        failures=0,
        failing_since=None,
        retry_at=None,
        updated_at=now,
    )
    if raised:
        logger.error("%s", message)


def record(alias: str, error: ProviderError | None) -> None:
    """What a call's outcome means for ``alias``: :func:`answered`, :func:`failed` or
    :func:`key_refused`."""
    if error is None:
        answered(alias)
    elif error.key_refused:
        key_refused(alias, error)
    elif error.unanswered:
        failed(alias, error)
    else:
        answered(alias)


def _clock(when: datetime) -> str:
    return formats.time_format(timezone.localtime(when), "TIME_FORMAT")


def outage_text(name: str, since: datetime) -> str:
    """ "Wave is not answering since 14:02; new jobs wait until it recovers." """
    text = gettext(
        "%(provider)s is not answering since %(since)s; new jobs wait until it recovers."
    )
    return text % {"provider": name, "since": _clock(since)}


def down_note(alias: str, name: str) -> str:
    """ "Wave has not been answering since 14:02." while its breaker is not closed, else ""."""
    health = outage(alias)
    if health is None:
        return ""
    return gettext("%(provider)s has not been answering since %(since)s.") % {
        "provider": name,
        "since": _clock(health.failing_since or health.updated_at),
    }


def outage(alias: str) -> ProviderHealth | None:
    """The provider's row while its breaker is not closed, else None."""
    return ProviderHealth.objects.filter(provider=alias).exclude(state=BreakerState.CLOSED).first()


def display_name(alias: str) -> str:
    """How messages name provider ``alias`` ("Wave"); the alias itself when it is not
    configured (any more)."""
    from imagen_assets.providers import provider_display_name

    return provider_display_name(alias)


def alert_texts() -> list[tuple[str, str]]:
    """("error" | "warning", sentence) for each provider the admin should warn about: a
    refused API key (a configuration alert), a provider not answering."""
    texts = []
    for health in alerts():
        name = display_name(health.provider)
        if health.key_refused_at is not None:
            sentence = gettext(
                "Configuration alert since %(when)s: %(message)s Its jobs fail until the key "
                "is fixed."
            ) % {"when": _clock(health.key_refused_at), "message": health.key_refused_message}
            texts.append(("error", sentence))
        if health.state != BreakerState.CLOSED:
            since = health.failing_since or health.updated_at
            texts.append(("warning", outage_text(name, since)))
    return texts


def alerts() -> list[ProviderHealth]:
    """Every provider that is not answering or whose API key was refused, for the admin."""
    return list(
        ProviderHealth.objects.filter(
            ~Q(state=BreakerState.CLOSED) | Q(key_refused_at__isnull=False)
        ).order_by("provider")
    )
