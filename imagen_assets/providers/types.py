"""What providers and the pipeline hand each other: plain, frozen values.

:class:`ProviderTask` is also what a signed webhook reports; it crosses a process boundary
(the view records it, a job applies it), so it carries its own JSON form: a field added
here is written and read in one place, never lost on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from imagen_assets.status import TaskStatus


@dataclass(frozen=True)
class GenerationParams:
    """What the user asked for, for one provider task (at most ``max_images_per_task``)."""

    prompt: str
    aspect_ratio: str = "1:1"
    num_images: int = 1
    seed: int | None = None
    negative_prompt: str = ""


@dataclass(frozen=True)
class Output:
    """One image the provider produced: where to fetch it, and its NSFW flag if reported."""

    url: str
    nsfw: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "nsfw": self.nsfw}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Output:
        return cls(url=str(data["url"]), nsfw=bool(data.get("nsfw", False)))


@dataclass(frozen=True)
class ProviderTask:
    """A provider task as read from a submit answer, a status read or a signed webhook."""

    task_id: str
    status: TaskStatus
    progress: int | None = None
    outputs: tuple[Output, ...] = ()
    error_code: str = ""
    error_message: str = ""
    cost: Decimal | None = None
    #: The provider's own object, for support; not part of the JSON form.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict that :meth:`from_json` reads back into an equal task."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "progress": self.progress,
            "outputs": [output.to_json() for output in self.outputs],
            "error_code": self.error_code,
            "error_message": self.error_message,
            "cost": None if self.cost is None else str(self.cost),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProviderTask:
        cost = data.get("cost")
        return cls(
            task_id=str(data["task_id"]),
            status=TaskStatus(data["status"]),
            progress=data.get("progress"),
            outputs=tuple(Output.from_json(output) for output in data.get("outputs", ())),
            error_code=str(data.get("error_code", "")),
            error_message=str(data.get("error_message", "")),
            cost=None if cost is None else Decimal(str(cost)),
        )


@dataclass(frozen=True)
class WebhookNotice:
    """What a verified webhook told us.

    ``task`` is set only when the body is authoritative (a signed payload). When it is
    ``None`` the webhook is a hint and the task must be re-read from the provider.
    """

    event_id: str
    task_id: str
    task: ProviderTask | None = None
    #: The body as parsed, kept on the WebhookEvent for support.
    payload: Mapping[str, Any] = field(default_factory=dict)
