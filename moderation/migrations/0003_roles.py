"""The Moderators and Product staff groups (issue 4).

Permissions are created by a post_migrate signal, which has not run yet in a
fresh database, so they are created here first for the apps involved.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MODERATORS = "Moderators"
PRODUCT_STAFF = "Product staff"

GROUP_PERMISSIONS = {
    # Moderation actions, terms, sanctions, the audit log read-only; no room
    # settings, no users.
    MODERATORS: [
        ("danmaku", "view_danmaku"),
        ("danmaku", "change_danmaku"),
        ("moderation", "add_blockedterm"),
        ("moderation", "change_blockedterm"),
        ("moderation", "delete_blockedterm"),
        ("moderation", "view_blockedterm"),
        ("moderation", "add_sanction"),
        ("moderation", "change_sanction"),
        ("moderation", "view_sanction"),
        ("moderation", "view_auditentry"),
    ],
    # Room throttle settings and the emergency preset; no moderation.
    PRODUCT_STAFF: [
        ("danmaku", "view_room"),
        ("danmaku", "change_room"),
    ],
}


def create_groups(apps, schema_editor):
    for label in ("danmaku", "moderation"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in codenames
        ]
        group.permissions.set(permissions)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUP_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("moderation", "0002_sanction_auditentry"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
