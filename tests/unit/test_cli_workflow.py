"""The workflow's command-line twins: imagen_review, imagen_comment, imagen_campaign,
imagen_generate --user and imagen_status --json, driven through ``call_command``.

Every command acts as ``--user``, prints one JSON object per line with ``--json`` (``ok``,
and ``error`` when refused), writes each refusal's reason on stderr, exits 1 when anything
was refused (the rest still done) and 2 for arguments that cannot be right.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.utils import timezone
from unit_helpers import make_campaign, make_task

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.models import (
    Activity,
    Campaign,
    Comment,
    GeneratedImage,
    GenerationTask,
    ReviewDecision,
    ShareLink,
)

pytestmark = pytest.mark.django_db

REVIEWER_PERMS = [
    "approve_generatedimage",
    "reject_generatedimage",
    "revoke_generatedimage",
    "signoff_campaign",
]
OWNER_PERMS = ["generate_images", "change_campaign", "change_review_policy", "view_campaign"]


@dataclass
class Run:
    """What one command printed, and the error it ended with (None: exit 0)."""

    stdout: str
    stderr: str
    error: CommandError | None

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.returncode


def run(name: str, *args: Any) -> Run:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *[str(arg) for arg in args], stdout=out, stderr=err)
    except CommandError as exc:
        return Run(out.getvalue(), err.getvalue(), exc)
    return Run(out.getvalue(), err.getvalue(), None)


def make_user(username: str, codenames: list[str], *, group: Group | None = None) -> Any:
    user = get_user_model().objects.create_user(username)  # no password: no hashing
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=codenames)
    )
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def owner() -> Any:
    return make_user("olga", OWNER_PERMS)


@pytest.fixture
def reviewers() -> Group:
    return Group.objects.create(name="Reviewers")


@pytest.fixture
def rita(reviewers: Group) -> Any:
    return make_user("rita", REVIEWER_PERMS, group=reviewers)


@pytest.fixture
def remy(reviewers: Group) -> Any:
    return make_user("remy", REVIEWER_PERMS, group=reviewers)


@pytest.fixture
def campaign(owner: Any) -> Campaign:
    return make_campaign("spring", created_by=owner)


def ready_images(campaign: Campaign, requester: Any, count: int = 2) -> list[GeneratedImage]:
    task = make_task(
        campaign,
        num_images=count,
        status="succeeded",
        image_status="succeeded",
        requested_by=requester,
    )
    return list(task.images.order_by("index"))


@pytest.fixture
def images(campaign: Campaign, owner: Any) -> list[GeneratedImage]:
    return ready_images(campaign, owner)


def fresh(image: GeneratedImage) -> GeneratedImage:
    return GeneratedImage.objects.get(pk=image.pk)


def status_of(campaign: Campaign) -> str:
    return Campaign.objects.get(pk=campaign.pk).status


# -- --user ---------------------------------------------------------------------------------


class UserTests:
    @pytest.mark.parametrize(
        "command",
        [
            ["imagen_review", "1", "--approve"],
            ["imagen_comment", "1", "--text", "hi"],
            ["imagen_campaign", "spring", "--submit"],
            ["imagen_generate", "--campaign", "spring", "--prompt", "p"],
        ],
    )
    def test_an_unknown_user_is_an_error_naming_it(self, command, campaign):
        result = run(*command, "--user", "nobody-here", "--json")

        assert result.exit_code == 1
        assert "nobody-here" in str(result.error)
        (line,) = [json.loads(text) for text in result.stdout.splitlines()]
        assert line["ok"] is False and "nobody-here" in line["error"]
        assert set(line) == {"id" if command[1] == "1" else "campaign", "ok", "error"}
        assert not Activity.objects.exists()
        assert not GenerationTask.objects.exists()

    @pytest.mark.parametrize(
        "command", [["imagen_review", "1", "--approve"], ["imagen_campaign", "x", "--archive"]]
    )
    def test_user_is_required_by_the_review_commands(self, command):
        with pytest.raises(CommandError, match="--user"):
            call_command(*command)

    def test_the_user_is_looked_up_by_the_models_username_field(self, images, rita, monkeypatch):
        # A site whose users log in by e-mail: USERNAME_FIELD decides, not "username".
        monkeypatch.setattr(get_user_model(), "USERNAME_FIELD", "email")
        rita.email = "rita@example.com"
        rita.save()

        result = run("imagen_review", images[0].pk, "--approve", "--user", "rita@example.com")

        assert result.exit_code == 0, result.stderr
        assert ReviewDecision.objects.get().reviewer == rita
        by_username = run("imagen_review", images[1].pk, "--approve", "--user", "rita")
        assert by_username.exit_code == 1
        assert "There is no user 'rita'." in str(by_username.error)


# -- imagen_review --------------------------------------------------------------------------


class ReviewCommandTests:
    def test_approve_records_one_approval_as_the_user(self, images, rita):
        result = run("imagen_review", images[0].pk, "--approve", "--user", "rita")

        assert result.exit_code == 0
        assert result.stderr == ""
        assert f"Image #{images[0].pk}: approved." in result.stdout
        decision = ReviewDecision.objects.get()
        assert (decision.image_id, decision.decision, decision.reviewer) == (
            images[0].pk,
            "approve",
            rita,
        )
        assert fresh(images[0]).review_status == "approved"

    def test_approvals_accumulate_to_the_policy(self, campaign, images, rita, remy):
        campaign.required_approvals = 2
        campaign.save()

        first = run("imagen_review", images[0].pk, "--approve", "--user", "rita", "--json")
        second = run("imagen_review", images[0].pk, "--approve", "--user", "remy", "--json")

        assert first.lines == [{"id": images[0].pk, "ok": True, "review_status": "pending"}]
        assert second.lines == [{"id": images[0].pk, "ok": True, "review_status": "approved"}]
        text = run("imagen_review", images[1].pk, "--approve", "--user", "rita")
        assert "approval recorded, 1 of 2 needed" in text.stdout

    def test_reject_with_a_note_rejects_and_the_reason_is_a_comment(self, images, rita):
        result = run(
            "imagen_review", images[0].pk, "--reject", "--note", "off brand", "--user", "rita"
        )

        assert result.exit_code == 0
        assert fresh(images[0]).review_status == "rejected"
        assert Comment.objects.get().text == "off brand"

    def test_revoke_with_a_note_starts_a_new_round(self, images, rita):
        review.decide(images[0].pk, "approve", Actor.of(rita))

        result = run(
            "imagen_review",
            images[0].pk,
            "--revoke",
            "--note",
            "wrong logo",
            "--user",
            "rita",
            "--json",
        )

        assert result.lines == [{"id": images[0].pk, "ok": True, "review_status": "pending"}]
        image = fresh(images[0])
        assert (image.review_status, image.review_round) == ("pending", 2)
        assert ReviewDecision.objects.filter(decision="revoke", note="wrong logo").count() == 1

    @pytest.mark.parametrize("flag", ["--reject", "--revoke"])
    @pytest.mark.parametrize("note", [None, "   "])
    def test_reject_and_revoke_require_a_note(self, images, rita, flag, note):
        extra = [] if note is None else ["--note", note]

        result = run("imagen_review", images[0].pk, flag, *extra, "--user", "rita")

        assert result.exit_code == 2
        assert "--note is required" in str(result.error)
        assert not ReviewDecision.objects.exists()

    def test_one_decision_flag_is_required(self, images):
        with pytest.raises(CommandError, match="one of the arguments"):
            call_command("imagen_review", images[0].pk, "--user", "rita")
        with pytest.raises(CommandError, match="not allowed with"):
            call_command("imagen_review", images[0].pk, "--approve", "--reject", "--user", "r")

    def test_a_refusal_leaves_the_other_images_done_and_exits_1(self, campaign, images, rita):
        unready = make_task(campaign).images.get()

        result = run(
            "imagen_review", images[0].pk, unready.pk, images[1].pk, "--approve", "--user",
            "rita", "--json",
        )  # fmt: skip

        assert result.exit_code == 1
        assert "1 of 3 was refused" in str(result.error)
        error = f"Image #{unready.pk} is not ready (Queued); only finished images can be reviewed."
        assert result.lines == [
            {"id": images[0].pk, "ok": True, "review_status": "approved"},
            {"id": unready.pk, "ok": False, "error": error},
            {"id": images[1].pk, "ok": True, "review_status": "approved"},
        ]
        assert result.stderr.strip() == error
        assert fresh(images[1]).review_status == "approved"

    def test_each_id_is_decided_once(self, images, rita):
        result = run(
            "imagen_review", images[0].pk, images[0].pk, "--approve", "--user", "rita", "--json"
        )

        assert result.exit_code == 0
        assert len(result.lines) == 1
        assert ReviewDecision.objects.count() == 1

    @pytest.mark.parametrize(
        ("who", "setup", "reason"),
        [
            ("olga", None, "olga may not review images of Spring."),
            ("rita", "self", "was requested by you; another reviewer must decide"),
            ("rita", "decided", "was already approved; reload to see the decision."),
            ("rita", "twice", "You already decided on image"),
            ("rita", "archived", "Spring is archived; nothing can be decided in it."),
            ("outsider", "not-in-group", "outsider may not review images of Spring."),
            ("rita", "missing", "There is no image #"),
        ],
    )
    def test_each_refusal_says_why_and_records_nothing(
        self, campaign, images, owner, rita, remy, reviewers, who, setup, reason
    ):
        image_id = images[0].pk
        if setup == "self":
            GenerationTask.objects.update(requested_by=rita)
        elif setup == "decided":
            review.decide(image_id, "approve", Actor.of(remy))
        elif setup == "twice":
            campaign.required_approvals = 2
            campaign.save()
            review.decide(image_id, "approve", Actor.of(rita))
        elif setup == "archived":
            review.archive(campaign.pk, Actor.of(owner))
        elif setup == "not-in-group":
            make_user("outsider", REVIEWER_PERMS)
            campaign.reviewer_group = reviewers
            campaign.save()
        elif setup == "missing":
            image_id = 987654
        decisions = ReviewDecision.objects.count()

        result = run("imagen_review", image_id, "--approve", "--user", who, "--json")

        assert result.exit_code == 1
        [line] = result.lines
        assert line["ok"] is False
        assert line["id"] == image_id
        assert reason in line["error"]
        assert reason in result.stderr
        assert ReviewDecision.objects.count() == decisions

    def test_revoke_needs_its_own_permission(self, images, rita, reviewers):
        review.decide(images[0].pk, "approve", Actor.of(rita))
        make_user("ravi", ["approve_generatedimage", "reject_generatedimage"], group=reviewers)

        result = run("imagen_review", images[0].pk, "--revoke", "--note", "x", "--user", "ravi")

        assert result.exit_code == 1
        assert "ravi may not revoke reviews of Spring." in result.stderr
        assert fresh(images[0]).review_status == "approved"

    def test_the_real_exit_status_and_stderr(self, images, rita, capsys, monkeypatch):
        """From the shell: refusals on stderr, exit status 1, stdout only the JSON."""
        from django.core.management import base

        # run_from_argv closes every connection at the end: not the test's own.
        monkeypatch.setattr(base.connections, "close_all", lambda: None)
        command = load_command_class("imagen_assets", "imagen_review")

        with pytest.raises(SystemExit) as exited:
            argv = ["manage.py", "imagen_review", str(images[0].pk), "424242", "--approve"]
            command.run_from_argv([*argv, "--user", "rita", "--json"])

        assert exited.value.code == 1
        out, err = capsys.readouterr()
        assert [json.loads(line)["ok"] for line in out.splitlines()] == [True, False]
        assert "There is no image #424242." in err
        assert "1 of 2 was refused." in err


# -- imagen_comment -------------------------------------------------------------------------


class CommentCommandTests:
    def test_adds_a_comment_as_the_user(self, images, rita):
        result = run(
            "imagen_comment", images[0].pk, "--text", " Crop tighter ", "--user", "rita", "--json"
        )

        comment = Comment.objects.get()
        assert result.lines == [{"id": images[0].pk, "ok": True, "comment": comment.pk}]
        assert (comment.author, comment.text, comment.image_id) == (
            rita,
            "Crop tighter",
            images[0].pk,
        )
        assert Activity.objects.filter(verb="commented", actor=rita).exists()
        text = run("imagen_comment", images[0].pk, "--text", "ok", "--user", "rita").stdout
        assert f"added to image #{images[0].pk}." in text

    @pytest.mark.parametrize(
        ("who", "text", "image", "reason"),
        [
            ("rita", "   ", "first", "Write a comment."),
            ("stranger", "hello", "first", "stranger may not comment on this image."),
            ("rita", "hello", "missing", "There is no image #555555."),
        ],
    )
    def test_refusals_say_why_and_exit_1(self, images, rita, who, text, image, reason):
        make_user("stranger", [])
        image_id = images[0].pk if image == "first" else 555555

        result = run("imagen_comment", image_id, "--text", text, "--user", who, "--json")

        assert result.exit_code == 1
        assert result.lines == [{"id": image_id, "ok": False, "error": reason}]
        assert reason in result.stderr
        assert not Comment.objects.exists()

    def test_text_is_required(self, images):
        with pytest.raises(CommandError, match="--text"):
            call_command("imagen_comment", images[0].pk, "--user", "rita")


# -- imagen_campaign ------------------------------------------------------------------------


class CampaignCommandTests:
    def test_the_whole_sign_off_as_the_owner_and_a_reviewer(self, campaign, images, rita):
        submitted = run("imagen_campaign", "spring", "--submit", "--user", "olga", "--json")
        assert submitted.lines == [{"campaign": "spring", "ok": True, "status": "in_review"}]
        assert Campaign.objects.get().submitted_by.username == "olga"

        changes = run(
            "imagen_campaign", "spring", "--request-changes", "--note", "warmer light",
            "--user", "rita",
        )  # fmt: skip
        assert changes.exit_code == 0
        assert "Changes requested in Spring." in changes.stdout
        assert status_of(campaign) == "changes_requested"
        assert Activity.objects.get(verb="changes_requested").note == "warmer light"

        assert run("imagen_campaign", "spring", "--submit", "--user", "olga").exit_code == 0
        run("imagen_review", images[0].pk, images[1].pk, "--approve", "--user", "rita")
        approved = run("imagen_campaign", "spring", "--approve", "--note", "ship it", "--user",
                       "rita", "--json")  # fmt: skip
        assert approved.lines == [{"campaign": "spring", "ok": True, "status": "approved"}]

        reopened = run("imagen_campaign", "spring", "--reopen", "--user", "olga")
        assert "Spring is reopened as a draft." in reopened.stdout
        assert status_of(campaign) == "draft"

        archived = run("imagen_campaign", "spring", "--archive", "--user", "olga", "--json")
        assert archived.lines == [{"campaign": "spring", "ok": True, "status": "archived"}]

    @pytest.mark.parametrize(
        ("state", "args", "who", "reason"),
        [
            ("no-ready", ["--submit"], "olga", "Spring has no ready image to review yet."),
            ("draft", ["--submit"], "rita", "rita may not submit campaigns for review."),
            ("draft", ["--approve"], "rita", "Spring is draft, not in review."),
            (
                "in_review",
                ["--approve"],
                "rita",
                "2 image(s) of Spring still wait for review.",
            ),
            ("self", ["--approve"], "rita", "You submitted Spring; someone else must sign it"),
            ("draft", ["--reopen"], "olga", "only an approved or archived campaign can be"),
            ("archived", ["--archive"], "olga", "Spring is already archived."),
            (
                "short",
                ["--submit"],
                "olga",
                "needs 3 approvals per image but only 2 eligible reviewer(s)",
            ),
        ],
    )
    def test_each_refusal_says_why_and_changes_nothing(
        self, campaign, owner, rita, remy, state, args, who, reason
    ):
        if state != "no-ready":
            ready_images(campaign, owner)
        if state == "in_review":
            review.submit(campaign.pk, Actor.of(owner))
        elif state == "self":
            campaign.allow_self_approval = False
            campaign.save()
            rita.user_permissions.add(Permission.objects.get(codename="change_campaign"))
            rita = get_user_model().objects.get(pk=rita.pk)  # permissions are cached
            review.submit(campaign.pk, Actor.of(rita))
        elif state == "archived":
            review.archive(campaign.pk, Actor.of(owner))
        elif state == "short":
            campaign.required_approvals = 3
            campaign.save()
        before = status_of(campaign)
        activity = Activity.objects.count()

        result = run("imagen_campaign", "spring", *args, "--user", who, "--json")

        assert result.exit_code == 1
        [line] = result.lines
        assert (line["campaign"], line["ok"]) == ("spring", False)
        assert reason in line["error"]
        assert reason in result.stderr
        assert status_of(campaign) == before
        assert Activity.objects.count() == activity

    def test_an_unknown_campaign_is_refused_by_name(self, owner):
        result = run("imagen_campaign", "autumn", "--archive", "--user", "olga", "--json")

        assert result.exit_code == 1
        assert result.lines == [
            {"campaign": "autumn", "ok": False, "error": "There is no campaign 'autumn'."}
        ]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--request-changes"], "--note is required with --request-changes"),
            (["--request-changes", "--note", "  "], "--note is required with --request-changes"),
            (["--submit", "--note", "x"], "--note is not taken with --submit"),
            (["--policy"], "--policy needs"),
            (["--archive", "--required-approvals", "2"], "go with --policy"),
            (["--policy", "--allow-self-approval", "--no-self-approval"], "not allowed with"),
        ],
    )
    def test_arguments_that_cannot_be_right(self, campaign, args, message):
        with pytest.raises(CommandError, match=message):
            call_command("imagen_campaign", "spring", *args, "--user", "olga")
        assert not Activity.objects.exists()

    def test_set_the_policy(self, campaign, reviewers):
        result = run(
            "imagen_campaign", "spring", "--policy", "--required-approvals", 2,
            "--reviewer-group", "Reviewers", "--allow-self-approval", "--user", "olga", "--json",
        )  # fmt: skip

        assert result.lines == [
            {
                "campaign": "spring",
                "ok": True,
                "status": "draft",
                "required_approvals": 2,
                "reviewer_group": "Reviewers",
                "allow_self_approval": True,
            }
        ]
        campaign.refresh_from_db()
        assert (
            campaign.required_approvals,
            campaign.reviewer_group,
            campaign.allow_self_approval,
        ) == (2, reviewers, True)

        cleared = run(
            "imagen_campaign", "spring", "--policy", "--reviewer-group", "", "--no-self-approval",
            "--user", "olga",
        )  # fmt: skip
        assert "reviewers: anyone who may approve, self-approval not allowed" in cleared.stdout
        campaign.refresh_from_db()
        assert (
            campaign.required_approvals,
            campaign.reviewer_group,
            campaign.allow_self_approval,
        ) == (2, None, False)

    def test_an_unknown_group_is_an_error_naming_it(self, campaign):
        result = run(
            "imagen_campaign", "spring", "--policy", "--reviewer-group", "Legal", "--user", "olga"
        )

        assert result.exit_code == 1
        assert "There is no group 'Legal'." in str(result.error)
        assert Campaign.objects.get().reviewer_group is None

    @pytest.mark.parametrize(
        ("who", "approvals", "state", "reason"),
        [
            ("rita", 2, "draft", "rita may not change review policies."),
            ("olga", 11, "draft", "Ask for 1 to 10 approvals per image."),
            ("olga", 2, "in_review", "Spring is in review; its policy can change once"),
        ],
    )
    def test_policy_refusals(self, campaign, owner, rita, remy, who, approvals, state, reason):
        if state == "in_review":
            ready_images(campaign, owner)
            review.submit(campaign.pk, Actor.of(owner))

        result = run(
            "imagen_campaign", "spring", "--policy", "--required-approvals", approvals,
            "--user", who, "--json",
        )  # fmt: skip

        assert result.exit_code == 1
        assert reason in result.lines[0]["error"]
        assert Campaign.objects.get().required_approvals == 1


# -- imagen_generate --user -----------------------------------------------------------------


class GenerateCommandTests:
    def test_records_who_requested_and_who_owns_a_new_campaign(self, owner, enqueued):
        result = run(
            "imagen_generate", "--campaign", "Autumn sale", "--prompt", "leaves", "--count", 2,
            "--user", "olga", "--json",
        )  # fmt: skip

        assert result.exit_code == 0, result.stderr
        assert len(result.lines) == 2
        assert set(GenerationTask.objects.values_list("requested_by", flat=True)) == {owner.pk}
        assert Campaign.objects.get(slug="autumn-sale").created_by == owner
        assert Activity.objects.get(verb="generated").actor == owner

    def test_without_user_nobody_is_recorded(self, campaign, enqueued):
        result = run("imagen_generate", "--campaign", "spring", "--prompt", "leaves")

        assert result.exit_code == 0, result.stderr
        assert GenerationTask.objects.get().requested_by is None

    def test_a_user_without_the_generate_permission_is_refused_and_nothing_made(
        self, rita, enqueued
    ):
        result = run(
            "imagen_generate", "--campaign", "new-one", "--prompt", "p", "--user", "rita",
            "--json",
        )  # fmt: skip

        assert result.exit_code == 1
        error = "rita may not generate images."
        assert result.lines == [{"campaign": "new-one", "ok": False, "error": error}]
        assert error in result.stderr
        assert not Campaign.objects.exists()
        assert not GenerationTask.objects.exists()
        assert enqueued == []

    def test_generation_in_a_signed_off_campaign_is_refused(self, campaign, owner, enqueued):
        review.archive(campaign.pk, Actor.of(owner))

        result = run(
            "imagen_generate", "--campaign", "spring", "--prompt", "p", "--user", "olga", "--json"
        )

        assert result.exit_code == 1
        assert result.lines == [
            {
                "campaign": "spring",
                "ok": False,
                "error": "Spring is archived; reopen it to generate more images.",
            }
        ]
        assert not GenerationTask.objects.exists()


# -- imagen_status --json -------------------------------------------------------------------


class StatusCommandTests:
    def test_every_review_decision_in_order_and_the_current_approvals(
        self, campaign, images, owner, rita, remy
    ):
        campaign.required_approvals = 2
        campaign.save()
        first = images[0].pk
        review.decide(first, "approve", Actor.of(rita), note="nice")
        review.decide(first, "reject", Actor.of(remy), note="too dark")
        review.revoke(first, Actor.of(rita), note="re-check")
        review.decide(first, "approve", Actor.of(remy))
        ShareLink.objects.create(
            campaign=campaign,
            email="ext@agency.example",
            expires_at=timezone.now() + timedelta(days=1),
        )
        review.decide(images[1].pk, "approve", Actor(email="ext@agency.example"))

        lines = run("imagen_status", "--json").lines

        by_id = {line["id"]: line for line in lines}
        assert [line["id"] for line in lines] == [images[0].pk, images[1].pk]
        row = by_id[first]
        assert (row["review_status"], row["approvals"]) == ("pending", 1)
        assert [(r["user"], r["decision"], r["note"]) for r in row["reviews"]] == [
            ("rita", "approve", "nice"),
            ("remy", "reject", "too dark"),
            ("rita", "revoke", "re-check"),
            ("remy", "approve", ""),
        ]
        for entry in row["reviews"]:
            assert set(entry) == {"user", "decision", "note", "at"}
            assert datetime.fromisoformat(entry["at"]).tzinfo is not None
        assert by_id[images[1].pk]["reviews"][0]["user"] == "ext@agency.example"
        assert by_id[images[1].pk]["approvals"] == 1
        assert "campaign_status" not in row  # only with --campaign

    def test_with_campaign_each_object_has_the_campaign_status(self, campaign, images, owner):
        other = make_campaign("other")
        ready_images(other, owner, 1)

        lines = run("imagen_status", "--campaign", "spring", "--json").lines

        assert [line["id"] for line in lines] == [image.pk for image in images]
        assert {line["campaign_status"] for line in lines} == {"draft"}
        assert {line["review_status"] for line in lines} == {"pending"}
        assert {line["approvals"] for line in lines} == {0}
        assert {json.dumps(line["reviews"]) for line in lines} == {"[]"}

    def test_a_fixed_number_of_queries(self, campaign, owner, rita, django_assert_num_queries):
        for image in ready_images(campaign, owner, 2):
            review.decide(image.pk, "approve", Actor.of(rita))
        # The providers' health, the campaign, the images, their decisions.
        with django_assert_num_queries(4):
            run("imagen_status", "--campaign", "spring", "--json")
        for image in ready_images(campaign, owner, 4):
            review.decide(image.pk, "reject", Actor.of(rita), note="no")
        with django_assert_num_queries(4):
            lines = run("imagen_status", "--campaign", "spring", "--json").lines
        assert len(lines) == 6

    def test_an_unknown_campaign_is_an_error(self):
        result = run("imagen_status", "--campaign", "nope", "--json")

        assert result.exit_code == 1
        assert "There is no campaign 'nope'." in str(result.error)
