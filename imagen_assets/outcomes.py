"""What a job run did, as a value: :class:`Outcome` (with :class:`Did` and :class:`Why`).

Jobs return one; RQ keeps it as the job's result, and ``str()`` of it is the line kept on
webhook events and in the logs. Tests compare outcomes, not strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Did(StrEnum):
    """What a job run did."""

    SKIPPED = "skipped"  # nothing to do (why says why)
    FAILED = "failed"  # the task or image was failed (why says why, when known)
    SUBMITTED = "submitted"  # the provider took the task (detail: its id)
    RETRYING = "retrying"  # the submit is queued again (delay)
    READ = "read"  # the status was read and recorded (detail: the task's status)
    READ_FAILED = "read failed"  # the read got no answer; another is scheduled (detail)
    STORED = "stored"  # complete() ran (stored, withheld, retrying)
    APPLIED = "applied"  # a signed webhook's state was recorded (detail: the status)
    IGNORED = "ignored"  # a signed webhook changed nothing (detail: why)
    REREAD = "re-read"  # a webhook hint made the task be read again
    WAITING = "waiting"  # tried again later: a webhook's task is not saved yet, or the
    # provider is not answering (why says which; delay)
    ORPHANED = "orphaned"  # a webhook names no task of ours


class Why(StrEnum):
    ALREADY_SUBMITTED = "already submitted or being submitted"
    CLAIM_LOST = "claim lost; provider task orphaned"
    TERMINAL = "terminal"
    NOT_SUBMITTED = "not submitted yet"
    NOT_DUE = "next read not due yet"
    NOT_SUCCEEDED = "task has not succeeded"
    NOTHING_LEFT = "nothing left to store"
    PROCESSED = "processed"
    CONFIGURATION = "configuration"
    INVALID_REQUEST = "invalid request"
    INTERRUPTED = "interrupted submit"
    TOO_MANY_ATTEMPTS = "too many attempts"
    AMBIGUOUS = "ambiguous submit"
    TIMEOUT = "timeout"
    PROVIDER_DOWN = "provider not answering"
    PROVIDER_FULL = "provider at its concurrency cap"
    KEY_REFUSED = "API key refused"
    UNEXPECTED_ANSWER = "unexpected provider response"


@dataclass(frozen=True)
class Outcome:
    """The typed result of one job run; ``str()`` is the line kept on webhook events and
    in RQ's job results."""

    did: Did
    why: Why | None = None
    detail: str = ""
    delay: float = 0.0
    stored: int = 0
    withheld: int = 0
    retrying: int = 0
    #: What the same run went on to do (storing the images of a task it found finished).
    then: Outcome | None = None

    def __str__(self) -> str:
        text = self._text()
        if self.then is None:
            return text
        # "re-read: status processing" (what the re-read did), "applied succeeded; stored 1"
        return f"{text}{':' if self.did is Did.REREAD else ';'} {self.then}"

    def _text(self) -> str:
        match self.did:
            case Did.SKIPPED | Did.FAILED:
                return f"{self.did}: {self.why}" if self.why else str(self.did)
            case Did.SUBMITTED:
                return f"submitted as {self.detail}"
            case Did.RETRYING:
                return f"retrying in {self.delay:.1f} s"
            case Did.READ:
                return f"status {self.detail}"
            case Did.READ_FAILED:
                return f"read failed, retrying: {self.detail}"
            case Did.STORED:
                counts = f"stored {self.stored}, withheld {self.withheld}"
                return f"{counts}, retrying {self.retrying}" if self.retrying else counts
            case Did.WAITING:
                return "waiting for the task to be saved"
            case Did.ORPHANED:
                return "orphaned: no task with this id"
            case Did.REREAD:
                return "re-read"
            case _:
                return f"{self.did} {self.detail}" if self.detail else str(self.did)
