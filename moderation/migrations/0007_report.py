"""Viewers' reports (issue 18), and the Moderators group's rights on them in the admin."""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

MODERATORS = "Moderators"
CODENAMES = ("view_report", "change_report")


def grant(apps, schema_editor):
    # As in 0003_roles: permissions are created after migrations, so here first.
    app_config = apps.get_app_config("moderation")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=MODERATORS)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="moderation", codename__in=CODENAMES))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label="moderation", codename__in=CODENAMES)
    for group in Group.objects.filter(name=MODERATORS):
        group.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("danmaku", "0015_merge_pin_reports"),
        ("moderation", "0006_broadcast_permissions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Report",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "reason",
                    models.CharField(
                        choices=[
                            ("spam", "spam or flooding"),
                            ("abuse", "harassment or abuse"),
                            ("hate", "hate speech"),
                            ("sexual", "sexual content"),
                            ("spoiler", "spoiler"),
                            ("other", "something else (say what)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("text", models.CharField(blank=True, max_length=300)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("open", "Open"),
                            ("hidden", "hidden (the comment was hidden)"),
                            ("dismissed", "dismissed (nothing wrong)"),
                            ("sanctioned", "sanctioned (hidden, and the sender sanctioned)"),
                        ],
                        default="open",
                        max_length=10,
                    ),
                ),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("in_good_standing", models.BooleanField(default=False)),
                (
                    "weight",
                    models.FloatField(default=0.0, help_text="The reporter's weight at report time (standing)."),
                ),
                (
                    "viewers",
                    models.PositiveIntegerField(
                        default=0, help_text="The room's viewer estimate at report time; 0: unknown."
                    ),
                ),
                ("outcome_seen", models.BooleanField(default=False)),
                (
                    "danmaku",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reports", to="danmaku.danmaku"
                    ),
                ),
                (
                    "reporter",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reports", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "resolved_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "room",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reports", to="danmaku.room"
                    ),
                ),
            ],
            options={
                "ordering": ("-created_at", "-id"),
                "indexes": [
                    models.Index(
                        condition=models.Q(("state", "open")), fields=["room", "danmaku"], name="report_room_open"
                    ),
                    models.Index(fields=["reporter", "created_at"], name="report_reporter_created"),
                    models.Index(
                        condition=models.Q(("state", "dismissed")),
                        fields=["reporter", "resolved_at"],
                        name="report_reporter_dismissed",
                    ),
                    models.Index(
                        condition=models.Q(models.Q(("state", "open"), _negated=True), ("outcome_seen", False)),
                        fields=["reporter"],
                        name="report_outcome_unseen",
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("danmaku", "reporter"), name="report_once_per_reporter")
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
