"""Product staff look after broadcasts (issue 17): the recording's URL and
the offset, edited under Broadcasts. Starting and stopping one is an action
on the rooms they already change."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PRODUCT_STAFF = "Product staff"
CODENAMES = ("view_broadcast", "change_broadcast")


def grant(apps, schema_editor):
    app_config = apps.get_app_config("danmaku")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=PRODUCT_STAFF)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="danmaku", codename__in=CODENAMES))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name=PRODUCT_STAFF):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="danmaku", codename__in=CODENAMES))


class Migration(migrations.Migration):
    dependencies = [
        ("danmaku", "0011_broadcast"),
        ("moderation", "0005_blockedterm_disabled_reason"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
